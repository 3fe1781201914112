"""The decoder's optimizer step: torch's fused Adam standing in for thinc's, and the fallback."""
import warnings

import numpy
import pytest
import spacy
import torch
from thinc.api import Optimizer, PyTorchShim, RAdam, SGD, warmup_linear

from spacy_unmask import optimizer as optimizer_module
from spacy_unmask import transformer_model
from spacy_unmask.errors import ConfigError
from spacy_unmask.layer_groups import LayerGroups
from spacy_unmask.optimizer import TorchAdam, mirror_refusal
from spacy_unmask.settings import DecoderSettings

from .pipelines import build_nlp, examples, spacy_train_steps

SHAPES = {"embed": (50, 8), "proj": (8, 8), "bias": (8,), "big": (300, 40)}


def thinc_adam(schedule: bool, **settings) -> Optimizer:
    rate = warmup_linear(initial_rate=1e-2, warmup_steps=3, total_steps=12) if schedule else 1e-2
    defaults = dict(L2=0.01, beta1=0.9, beta2=0.999, eps=1e-8, grad_clip=1.0, use_averages=False, L2_is_weight_decay=True)
    return Optimizer(rate, **{**defaults, **settings})


def gradients(step: int):
    rng = numpy.random.default_rng(step)
    # "big" has a norm far above the clip, "bias" one below it: both sides of the clip
    return {name: (rng.standard_normal(shape) * (5.0 if name == "big" else 0.05)).astype("float32")
            for name, shape in SHAPES.items()}


@pytest.mark.parametrize("decoupled", [True, False], ids=["weight_decay", "l2_in_gradient"])
@pytest.mark.parametrize("grad_clip", [1.0, 0.0], ids=["clipped", "unclipped"])
@pytest.mark.parametrize("schedule", [True, False], ids=["warmup_linear", "constant"])
@pytest.mark.parametrize("lr_scale", [1.0, 0.3], ids=["own_rate", "scaled_rate"])
def test_torch_adam_gives_the_weights_of_thinc_adam(decoupled, grad_clip, schedule, lr_scale):
    rng = numpy.random.default_rng(0)
    start = {name: rng.standard_normal(shape).astype("float32") for name, shape in SHAPES.items()}
    thinc_opt = thinc_adam(schedule, L2_is_weight_decay=decoupled, grad_clip=grad_clip)
    mirror_opt = thinc_adam(schedule, L2_is_weight_decay=decoupled, grad_clip=grad_clip)
    thinc_weights = {name: w.copy() for name, w in start.items()}
    params = [torch.nn.Parameter(torch.tensor(w)) for w in start.values()]
    mirror = TorchAdam(mirror_opt, [((0, name), p) for name, p in zip(SHAPES, params)], lr_scale=lr_scale)
    for step in range(12):
        grads = gradients(step)
        for name in SHAPES:
            thinc_weights[name], _ = thinc_opt((0, name), thinc_weights[name], grads[name].copy(), lr_scale=lr_scale)
        for param, name in zip(params, SHAPES):
            param.grad = torch.tensor(grads[name])
        mirror.step()
        assert all(float(p.grad.abs().max()) == 0.0 for p in params)
        thinc_opt.step_schedules()
        mirror_opt.step_schedules()
    for param, name in zip(params, SHAPES):
        numpy.testing.assert_allclose(param.detach().numpy(), thinc_weights[name], rtol=1e-5, atol=1e-6)  # a few float32 ulps at weights of ~1
        assert not numpy.allclose(start[name], thinc_weights[name])


def test_a_parameter_that_skipped_a_step_keeps_its_own_bias_correction():
    thinc_opt, mirror_opt = thinc_adam(False), thinc_adam(False)
    w = numpy.ones((4, 4), dtype="float32")
    a, b = torch.nn.Parameter(torch.ones(4, 4)), torch.nn.Parameter(torch.ones(4, 4))
    mirror = TorchAdam(mirror_opt, [((0, "a"), a), ((0, "b"), b)])
    thinc_a, thinc_b = w.copy(), w.copy()
    for step in range(4):
        g = numpy.full((4, 4), 0.1 * (step + 1), dtype="float32")
        thinc_a, _ = thinc_opt((0, "a"), thinc_a, g.copy())
        a.grad = torch.tensor(g)
        if step != 1:  # b gets no gradient at step 1
            thinc_b, _ = thinc_opt((0, "b"), thinc_b, g.copy())
            b.grad = torch.tensor(g)
        else:
            b.grad = None
        mirror.step()
    numpy.testing.assert_allclose(a.detach().numpy(), thinc_a, rtol=1e-6)
    numpy.testing.assert_allclose(b.detach().numpy(), thinc_b, rtol=1e-6)


def fresh(tiny_llama, lora, optimizer):
    spacy.util.fix_random_seed(0)
    nlp = build_nlp(tiny_llama, unmask="second_half", lora=lora)
    nlp.initialize(lambda: examples(nlp), sgd=optimizer)
    return nlp


@pytest.mark.parametrize("lora", [None, {"r": 4, "alpha": 8, "dropout": 0.0}], ids=["full", "lora"])
def test_spacy_training_steps_give_the_weights_of_thincs_optimizer(tiny_llama, lora, monkeypatch):
    ours = thinc_adam(True)
    assert mirror_refusal(ours) is None
    mirrored = spacy_train_steps(fresh(tiny_llama, lora, thinc_adam(True)), ours)
    # the state lives in the thinc optimizer, under thinc's keys, as float32 torch tensors
    moments = [v for v in ours.mom1.values() if isinstance(v, torch.Tensor)]
    assert len(moments) == len(mirrored) and all(m.dtype == torch.float32 for m in moments)
    # the reference: thinc's own shim step, over torch's own dense embedding gradient
    monkeypatch.setattr(transformer_model.DecoderShim, "finish_update", PyTorchShim.finish_update)
    monkeypatch.setattr("spacy_unmask.decoder.accumulate_in_place", lambda model: None)
    stock = spacy_train_steps(fresh(tiny_llama, lora, thinc_adam(True)), thinc_adam(True))
    assert mirrored.keys() == stock.keys() and mirrored
    for name in stock:
        torch.testing.assert_close(mirrored[name], stock[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: SGD(1e-2, use_averages=False), "SGD"),
        (lambda: RAdam(1e-2, use_averages=False), "RAdam"),
        (lambda: thinc_adam(False, use_averages=True), "use_averages"),
    ],
    ids=["sgd", "radam", "averages"],
)
def test_optimizers_we_cannot_mirror_run_through_thinc_with_one_notice(tiny_llama, make, reason, monkeypatch):
    monkeypatch.setattr(optimizer_module, "_NOTIFIED", set())
    start = fresh(tiny_llama, None, make())
    before = {n: p.detach().clone() for n, p in start.get_pipe("transformer").model.transformer.named_parameters()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = spacy_train_steps(fresh(tiny_llama, None, make()), make())
    notices = [w for w in caught if "runs through thinc" in str(w.message)]
    assert len(notices) == 1 and reason in str(notices[0].message)
    # the reference: thinc's own shim step, over torch's own dense embedding gradient
    monkeypatch.setattr(transformer_model.DecoderShim, "finish_update", PyTorchShim.finish_update)
    monkeypatch.setattr("spacy_unmask.decoder.accumulate_in_place", lambda model: None)
    stock = spacy_train_steps(fresh(tiny_llama, None, make()), make())
    for name in stock:
        torch.testing.assert_close(ours[name], stock[name], rtol=0, atol=0, msg=name)
    assert any(not torch.equal(ours[n], before[n]) for n in ours)


def head_weights(nlp) -> dict:
    head = nlp.get_pipe("ner").model
    # keyed by position in the head, not by node id: ids differ between two pipelines
    return {(i, node.name, name): node.ops.to_numpy(node.get_param(name)).copy()
            for i, node in enumerate(head.walk()) if node.name != "hf-pytorch"
            for name in node.param_names if node.has_param(name)}


def first_step(tiny_llama, scale: float, refuse: bool, monkeypatch):
    """What one spaCy training step moves: the decoder's weights and the ner head's."""
    if refuse:  # the thinc path, as for an optimizer TorchAdam does not mirror
        monkeypatch.setattr(transformer_model, "mirror_refusal", lambda optimizer: "forced")
        monkeypatch.setattr(transformer_model, "notify_fallback", lambda reason: None)
    spacy.util.fix_random_seed(0)
    nlp = build_nlp(tiny_llama, extra=f"learn_rate_scale = {scale}")
    nlp.initialize(lambda: examples(nlp), sgd=thinc_adam(False))
    module = nlp.get_pipe("transformer").model.transformer
    before = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
    head_before = head_weights(nlp)
    after = spacy_train_steps(nlp, thinc_adam(False), steps=1)
    head_after = head_weights(nlp)
    return ({n: after[n] - before[n] for n in after},
            {key: head_after[key] - head_before[key] for key in head_before})


@pytest.mark.parametrize("refuse", [False, True], ids=["torch_adam", "thinc"])
def test_learn_rate_scale_scales_the_decoders_step_and_leaves_the_heads_rate(tiny_llama, refuse, monkeypatch):
    full, full_head = first_step(tiny_llama, 1.0, refuse, monkeypatch)
    scaled, scaled_head = first_step(tiny_llama, 0.25, refuse, monkeypatch)
    # Adam's first step is lr * g / (|g| + eps) and the decay lr * L2 * w: both scale with the rate
    assert full and full.keys() == scaled.keys()
    for name in full:
        torch.testing.assert_close(scaled[name], 0.25 * full[name], rtol=1e-3, atol=1e-7, msg=name)
    assert any(float(d.abs().max()) > 0 for d in full.values())
    # the heads see the same first gradient and step at the optimizer's own rate
    assert full_head and any(numpy.abs(d).max() > 0 for d in full_head.values())
    for key in full_head:
        numpy.testing.assert_allclose(scaled_head[key], full_head[key], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("value", [0, -0.5, "fast", True, float("nan"), float("inf")])
def test_a_learn_rate_scale_that_is_not_a_positive_number_is_refused_by_name(value):
    with pytest.raises(ConfigError, match=r"learn_rate_scale=.* a positive number.*frozen_components"):
        DecoderSettings(unmask=LayerGroups.parse("none"), learn_rate_scale=value)
