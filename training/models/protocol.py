"""What export relies on in a model: the contract every family implements, declared once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch


@runtime_checkable
class ExportableModel(Protocol):
    """A model `training.export` can turn into a servable ONNX file and prove against PyTorch.

    The tensor names become the repository config's inputs and outputs (a contract with clients), the
    example inputs are what the exporter traces, and the named dynamic axes are the ones left free
    (`batch` always; `seq` for text, bounded by `config.max_length` where the model has one).
    """

    input_names: tuple[str, ...]  # forward's arguments, in order
    output_names: tuple[str, ...]  # forward's outputs, in order; ("logits",) marks a classifier
    config: Any  # the family's config dataclass: saved with the weights, read for `max_length`
    training: bool  # nn.Module's mode flag: export and parity run in eval mode and restore it

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The eager forward pass that ONNX Runtime is compared with."""
        ...

    def train(self, mode: bool = True) -> Any:
        """nn.Module's mode switch."""
        ...

    def eval(self) -> Any:
        """nn.Module's eval mode."""
        ...

    def example_inputs(self, batch: int = 2, length: int | None = None) -> tuple[torch.Tensor, ...]:
        """Inputs to trace the export with (`length`: sequence length, where the model has one)."""
        ...

    def dynamic_dims(self) -> dict[str, dict[int, str]]:
        """Tensor name -> {axis: axis name} of every dynamic axis, inputs and outputs."""
        ...
