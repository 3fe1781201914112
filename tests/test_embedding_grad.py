"""The input embedding's gradient added in place (sparse backward into one dense buffer)."""
import pytest
import spacy
import torch

from spacy_unmask.embedding_grad import accumulate_in_place

from .pipelines import build_nlp, examples, spacy_train_steps


def module_of(nlp):
    return nlp.get_pipe("transformer").model.transformer


def test_the_embedding_gradient_is_the_dense_one_added_into_one_buffer(tiny_llama):
    nlp = build_nlp(tiny_llama)
    nlp.initialize(lambda: examples(nlp))
    decoder = module_of(nlp).transformer
    weight = decoder.embed_tokens.weight
    ids = torch.tensor([[5, 7, 7, 9], [9, 3, 5, 0]])

    def backward():
        decoder(input_ids=ids).last_hidden_state.pow(2).sum().backward()

    backward()
    dense = weight.grad.clone()
    weight.grad = None
    accumulate_in_place(decoder)
    accumulate_in_place(decoder)  # a second call adds no second hook
    assert decoder.embed_tokens.sparse and weight.grad is None
    backward()
    assert not weight.grad.is_sparse  # made dense as soon as it arrived
    torch.testing.assert_close(weight.grad, dense)
    buffer = weight.grad
    buffer.zero_()
    backward()
    backward()  # without zeroing it accumulates, into the same dense buffer
    assert weight.grad.data_ptr() == buffer.data_ptr() and not weight.grad.is_sparse
    torch.testing.assert_close(weight.grad, 2 * dense)


@pytest.mark.parametrize("sgd_in_update", [False, True])
def test_training_with_the_in_place_embedding_gradient_reaches_the_same_weights(tiny_llama, monkeypatch, sgd_in_update):
    """In spacy train's order (every update, then every step) and in `nlp.update(sgd=...)`'s,
    where the decoder steps before its listeners backpropagate (its first step has no gradient)."""
    def trained():
        spacy.util.fix_random_seed(0)
        nlp = build_nlp(tiny_llama, unmask="all")
        optimizer = nlp.initialize(lambda: examples(nlp))
        if not sgd_in_update:
            return spacy_train_steps(nlp, optimizer, steps=4), module_of(nlp)
        for _ in range(6):
            nlp.update(examples(nlp), sgd=optimizer)
        return {n: p.detach().clone() for n, p in module_of(nlp).named_parameters()}, module_of(nlp)

    in_place, module = trained()
    assert module.transformer.embed_tokens.sparse
    monkeypatch.setattr("spacy_unmask.decoder.accumulate_in_place", lambda model: None)
    dense, plain = trained()
    assert not plain.transformer.embed_tokens.sparse
    assert in_place.keys() == dense.keys()
    for name in dense:
        torch.testing.assert_close(in_place[name], dense[name], rtol=1e-5, atol=1e-6, msg=name)


def test_a_frozen_embedding_is_left_alone(tiny_llama):
    nlp = build_nlp(tiny_llama, lora={"r": 4, "alpha": 8, "dropout": 0.0})
    nlp.initialize(lambda: examples(nlp))
    nlp.update(examples(nlp), sgd=False)
    embedding = module_of(nlp).transformer.get_input_embeddings()
    assert not embedding.sparse and embedding.weight.grad is None
