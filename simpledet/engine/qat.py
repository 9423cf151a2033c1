"""INT8 quantisation-aware training, as SimpleDet's config/int8 does it (its Quantization_int8 operator,
operator_cxx/contrib/quantization_int8-inl.h), built on torch.ao.quantization's FakeQuantize and observers.

What is quantised: the weights and the input activations of every Convolution, FullyConnected and
Deconvolution (SimpleDet's `quantized_op`): here every nn.Conv2d, nn.Linear and nn.ConvTranspose2d.
Both are symmetric signed 8-bit, levels -127..127 (SimpleDet's QUANT_LEVEL = 127), unit = threshold / 127:

- weights: threshold = max |w| of the current weight at every training step (per tensor, as SimpleDet;
  per output channel as an option): a MovingAverageMinMaxObserver with averaging constant 1;
- activations: threshold = an exponential moving average of max |x| over the training steps, decay
  0.99, started at the first step's max (a MovingAverageMinMaxObserver with averaging constant 0.01);
  values beyond the threshold are clipped.

`delay` is SimpleDet's delay_quant: the first `delay` training forward passes run in float and observe
nothing. In eval mode the observers stop and the stored thresholds are used, as SimpleDet's test does.

How it enters the model, which is not changed otherwise:
- weights through torch.nn.utils.parametrize: `conv.weight` reads as the fake-quantised weight, also
  where a backbone block reads the weight itself (`conv_norm`) instead of calling the conv;
- activations through a forward pre-hook on each quantised module. `conv_norm`'s folding of a frozen BN
  into the conv is switched off (every module's `fuse_frozen_bn = False`), so that the backbones call
  their convs as modules and the hooks see every input; the frozen BN then runs after the conv (the same
  function up to float rounding). Convs that a block calls at a per-call dilation (TridentNet's
  branches) are read through `conv_norm`'s functional path: their weights are quantised, their inputs not.

The state_dict gains the observers' buffers and names each quantised weight
`...parametrizations.weight.original`; `float_state_dict_keys` maps a float checkpoint onto it.

Gradients: torch's fake-quantise passes the gradient inside the threshold and zeroes it outside
(SimpleDet's grad_mode "clip"; its default "ste" passes it everywhere). Export: in eval mode each
quantiser is a clamp to -127..127 units and torch's decomposed quantize / dequantize ops with the
stored unit as a constant, which torch's ONNX exporter writes as QuantizeLinear + DequantizeLinear
(int8, zero point 0).
"""

from dataclasses import dataclass

import torch
import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers torch.ops.quantized_decomposed)
from torch import Tensor, nn
from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver
from torch.nn.utils import parametrize

from simpledet.errors import UserError

QUANT_LEVEL = 127  # SimpleDet's symmetric 8-bit levels: -127..127
LAYER_TYPES = {"conv": nn.Conv2d, "linear": nn.Linear, "deconv": nn.ConvTranspose2d}
STEP_BUFFER = "qat_forward_steps"


@dataclass
class QATConfig:
    """SimpleDet's QuantizeTrainingParam: `layers` its quantized_op (Convolution, FullyConnected,
    Deconvolution), `delay` its delay_quant, `ema_decay` the activation threshold's decay, and
    `weight_per_channel` its is_weight_perchannel (SimpleDet supports per tensor only)."""

    delay: int = 0
    ema_decay: float = 0.99
    weight_per_channel: bool = False
    layers: tuple[str, ...] = ("conv", "linear", "deconv")

    def check(self, key: str = "qat") -> None:
        if self.delay < 0:
            raise UserError(f"{key}.delay must be >= 0 training steps, got {self.delay}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UserError(f"{key}.ema_decay must be in [0, 1), got {self.ema_decay}")
        unknown = [name for name in self.layers if name not in LAYER_TYPES]
        if unknown or not self.layers:
            raise UserError(f"{key}.layers: {unknown or 'none given'}; choose from {sorted(LAYER_TYPES)}")


def _fake_quantize(per_channel: bool, averaging_constant: float) -> FakeQuantize:
    if per_channel:
        observer, qscheme = MovingAveragePerChannelMinMaxObserver, torch.per_channel_symmetric
    else:
        observer, qscheme = MovingAverageMinMaxObserver, torch.per_tensor_symmetric
    extra = dict(ch_axis=0) if per_channel else {}
    return FakeQuantize(observer=observer, quant_min=-QUANT_LEVEL, quant_max=QUANT_LEVEL, dtype=torch.qint8,
                        qscheme=qscheme, averaging_constant=averaging_constant, **extra)


class Quantizer(nn.Module):
    """One fake-quantiser (a torch.ao FakeQuantize with its observer). `active` is set by the model's
    step counter (QATSteps): off, it is the identity. Training: observe, then fake-quantise. Eval: the
    stored threshold, as a clamp and a fake-quantise over -128..127 (ONNX's int8 range; the clamp keeps
    the values in SimpleDet's -127..127)."""

    def __init__(self, fake_quant: FakeQuantize) -> None:
        super().__init__()
        self.fake_quant = fake_quant
        self.active = False
        self.frozen_scale: float | None = None  # the eval path's unit, a constant (set by freeze)

    def freeze(self) -> None:
        """Reads the stored per-tensor unit into a Python float for the eval path (outside a trace:
        an export then holds it as a constant)."""
        if not self.fake_quant.is_per_channel:
            self.frozen_scale = float(self.fake_quant.scale)

    def forward(self, x: Tensor) -> Tensor:
        if not self.active:
            return x
        if self.training:
            return self.fake_quant(x)
        # eval: quantise and dequantize (torch's decomposed ops, which ONNX export writes as
        # QuantizeLinear / DequantizeLinear), clamped first to SimpleDet's -127..127
        fq, ops = self.fake_quant, torch.ops.quantized_decomposed
        if fq.is_per_channel:
            q = ops.quantize_per_channel(x, fq.scale, fq.zero_point, fq.ch_axis, -128, 127, torch.int8)
            return ops.dequantize_per_channel(q, fq.scale, fq.zero_point, fq.ch_axis, -128, 127, torch.int8)
        scale = self.frozen_scale
        x = torch.clamp(x, -scale * QUANT_LEVEL, scale * QUANT_LEVEL)
        q = ops.quantize_per_tensor(x, scale, 0, -128, 127, torch.int8)
        return ops.dequantize_per_tensor(q, scale, 0, -128, 127, torch.int8)


class FakeQuantizedWeight(nn.Module):
    """The parametrization of a quantised layer's weight."""

    def __init__(self, quantizer: Quantizer) -> None:
        super().__init__()
        self.quantizer = quantizer

    def forward(self, weight: Tensor) -> Tensor:
        return self.quantizer(weight)


def _quantize_input(module: nn.Module, args: tuple) -> tuple:
    return (module.input_quantizer(args[0]), *args[1:])


class QATSteps:
    """Counts the training forward passes (a buffer on the model, so a resumed run continues the
    count) and switches every quantiser on once `delay` of them have run. The count is read from the
    buffer once (after building and after each load), then kept in Python: no device wait per step."""

    def __init__(self, model: nn.Module, delay: int, quantizers: list[Quantizer]) -> None:
        self.delay = delay
        self.quantizers = quantizers
        self.steps = int(getattr(model, STEP_BUFFER))
        self.frozen_at: int | None = None

    def before_forward(self, model: nn.Module, args: tuple) -> None:
        if model.training:
            active = self.steps >= self.delay  # SimpleDet: the first `delay` passes copy their input
            self.steps += 1
            getattr(model, STEP_BUFFER).fill_(self.steps)
        else:
            active = self.steps > self.delay  # thresholds exist only after a quantised training step
            if active and self.frozen_at != self.steps and not torch.compiler.is_exporting():
                self.freeze()
        self.set_active(active)

    def after_load(self, model: nn.Module, incompatible) -> None:
        buffer = getattr(model, STEP_BUFFER)
        if buffer.device.type != "meta":
            self.steps = int(buffer)
            if self.steps > self.delay:
                self.freeze()
        self.set_active(self.steps > self.delay)

    def freeze(self) -> None:
        """The eval path's constants from the thresholds as they stand (once per training step count)."""
        for quantizer in self.quantizers:
            quantizer.freeze()
        self.frozen_at = self.steps

    def set_active(self, active: bool) -> None:
        for quantizer in self.quantizers:
            quantizer.active = active


def prepare_qat(model: nn.Module, config: QATConfig) -> nn.Module:
    """Adds fake quantisation to `model` in place (module docstring) and returns it."""
    config.check()
    types = tuple(LAYER_TYPES[name] for name in config.layers)
    for module in model.modules():
        if hasattr(module, "fuse_frozen_bn"):
            module.fuse_frozen_bn = False  # call the convs as modules, so that their input hooks run
    quantizers = []
    targets = [m for m in model.modules() if isinstance(m, types)]
    for layer in targets:
        weight_q = Quantizer(_fake_quantize(config.weight_per_channel and not isinstance(layer, nn.ConvTranspose2d),
                                            averaging_constant=1.0))
        input_q = Quantizer(_fake_quantize(False, averaging_constant=1.0 - config.ema_decay))
        parametrize.register_parametrization(layer, "weight", FakeQuantizedWeight(weight_q))
        layer.input_quantizer = input_q
        layer.register_forward_pre_hook(_quantize_input)
        quantizers += [weight_q, input_q]
    model.register_buffer(STEP_BUFFER, torch.zeros((), dtype=torch.int64))
    steps = QATSteps(model, config.delay, quantizers)
    model.register_forward_pre_hook(steps.before_forward)
    model.register_load_state_dict_post_hook(steps.after_load)
    model.qat_steps = steps
    return model


def quantizers(model: nn.Module) -> list[Quantizer]:
    return [m for m in model.modules() if isinstance(m, Quantizer)]


def float_state_dict_keys(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """A float model's state_dict renamed for the QAT `model` (`x.weight` -> the parametrization's
    `x.parametrizations.weight.original`); other keys unchanged."""
    expected = model.state_dict()
    out = {}
    for key, value in state.items():
        if key.endswith(".weight") and key not in expected:
            renamed = key[: -len("weight")] + "parametrizations.weight.original"
            if renamed in expected:
                key = renamed
        out[key] = value
    return out
