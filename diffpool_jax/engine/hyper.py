"""One tree of a member's scalar hyper-parameters, from the configuration
through the sweep's points into the train state.

`Hyper` holds every value a sweep can vary without changing an array's
shape. Its fields are the sweep's axes: "lr", "clip", "weight_decay",
"dropout", and "aux.NAME" for the weight of auxiliary loss NAME (the path
to it in the tree). The same tree is a RunConfig's member values
(`RunConfig.member_hyper`), the [M] values of the members trained side by
side (`Members.hyper`) and, as float32 arrays, part of each member's
`training.TrainState`, where the optimizer factory and the loss read it.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

import flax.struct

AUX = "aux."        # axis prefix of an auxiliary loss's weight


@flax.struct.dataclass
class Hyper:
  """A member's scalar hyper-parameters (each leaf [] or, for stacked
  members, [M]).

  Attributes:
    lr: Adam's learning rate.
    clip: the global gradient norm is clipped to this.
    weight_decay: L2 weight decay added to the clipped gradient.
    dropout: rate at every convolution's input (used when the model was
      built with dropout, i.e. its config's dropout > 0).
    aux: {name: weight} of each auxiliary loss (summed over levels) in the
      training loss.
  """
  lr: Any
  clip: Any
  weight_decay: Any
  dropout: Any
  aux: Dict[str, Any]

  @classmethod
  def from_axes(cls, values: Mapping[str, Any]) -> "Hyper":
    """From {axis: value}: "lr", "clip", "weight_decay", "dropout" and
    "aux.NAME" for each auxiliary loss (KeyError names a missing one)."""
    aux = {axis[len(AUX):]: value for axis, value in values.items()
           if axis.startswith(AUX)}
    return cls(values["lr"], values["clip"], values["weight_decay"],
               values["dropout"], aux)

  def axes(self) -> Dict[str, Any]:
    """{axis: value}, named as `from_axes` takes them."""
    return {"lr": self.lr, "clip": self.clip,
            "weight_decay": self.weight_decay, "dropout": self.dropout,
            **{AUX + name: weight for name, weight in self.aux.items()}}
