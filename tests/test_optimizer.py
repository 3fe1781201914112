"""The decoder's optimizer step: torch's fused Adam standing in for thinc's, and the fallback."""
import warnings

import numpy
import pytest
import spacy
import torch
from thinc.api import Optimizer, PyTorchShim, RAdam, SGD, warmup_linear

from spacy_unmask import optimizer as optimizer_module
from spacy_unmask import transformer_model
from spacy_unmask.optimizer import TorchAdam, mirror_refusal

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
def test_torch_adam_gives_the_weights_of_thinc_adam(decoupled, grad_clip, schedule):
    rng = numpy.random.default_rng(0)
    start = {name: rng.standard_normal(shape).astype("float32") for name, shape in SHAPES.items()}
    thinc_opt = thinc_adam(schedule, L2_is_weight_decay=decoupled, grad_clip=grad_clip)
    mirror_opt = thinc_adam(schedule, L2_is_weight_decay=decoupled, grad_clip=grad_clip)
    thinc_weights = {name: w.copy() for name, w in start.items()}
    params = [torch.nn.Parameter(torch.tensor(w)) for w in start.values()]
    mirror = TorchAdam(mirror_opt, [((0, name), p) for name, p in zip(SHAPES, params)])
    for step in range(12):
        grads = gradients(step)
        for name in SHAPES:
            thinc_weights[name], _ = thinc_opt((0, name), thinc_weights[name], grads[name].copy())
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
