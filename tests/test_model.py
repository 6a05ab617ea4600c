"""model.py: exact against Hugging Face GPT-2, nanoGPT's parameter names and sizes, and KV-cache generation."""

import math

import pytest
import torch

from model import GPT, GPTConfig, sample_next_token

TINY = dict(block_size=32, vocab_size=101, n_layer=2, n_head=4, n_embd=32)


def tiny_gpt(seed=0, **overrides):
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{**TINY, **overrides})).eval()


def perturb(module, seed=1, std=0.1):
    """Noise on every weight, so that a zero bias, a unit LayerNorm or a wrong GELU cannot hide."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)


def save_hf_gpt2(path, activation_function="gelu_new"):
    """A small random GPT-2 saved with transformers' save_pretrained, as the real ones are."""
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=101, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                    activation_function=activation_function, attn_implementation="eager"))
    perturb(hf)
    hf.save_pretrained(path)
    return hf.eval()


def test_logits_match_hugging_face_gpt2(tmp_path):
    hf = save_hf_gpt2(tmp_path)
    model = GPT.from_pretrained(str(tmp_path)).eval()
    idx = torch.randint(0, 101, (3, 32), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = hf(idx).logits
        logits, _ = model(idx, targets=idx)
        last_logits, _ = model(idx)
    assert model.config.gelu_approximate == "tanh"
    assert (logits - expected).abs().max().item() < 1e-5
    assert (last_logits[:, 0] - expected[:, -1]).abs().max().item() < 1e-5


def test_exact_gelu_weights_match_hugging_face_with_exact_gelu(tmp_path):
    # nanoGPT trains with exact GELU; a model saved with activation 'gelu' must be computed that way
    hf = save_hf_gpt2(tmp_path, activation_function="gelu")
    model = GPT.from_pretrained(str(tmp_path)).eval()
    idx = torch.randint(0, 101, (2, 32), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits, _ = model(idx, targets=idx)
        assert (logits - hf(idx).logits).abs().max().item() < 1e-5


def test_the_gelu_choice_shows_in_the_logits(tmp_path):
    # the parity tests above could not tell the two GELUs apart if they gave the same logits here
    save_hf_gpt2(tmp_path)
    tanh_model = GPT.from_pretrained(str(tmp_path)).eval()
    exact_model = GPT(GPTConfig(**{**vars(tanh_model.config), "gelu_approximate": "none"})).eval()
    exact_model.load_state_dict(tanh_model.state_dict())
    idx = torch.arange(32).unsqueeze(0)
    with torch.no_grad():
        difference = (tanh_model(idx, idx)[0] - exact_model(idx, idx)[0]).abs().max().item()
    assert difference > 1e-4


def test_from_pretrained_rejects_an_unknown_name():
    with pytest.raises(ValueError, match="neither a GPT-2 model name"):
        GPT.from_pretrained("gpt3")


def test_parameter_names_are_nanogpts():
    model = tiny_gpt(n_layer=1)
    block = ["ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
             "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
             "mlp.c_proj.weight", "mlp.c_proj.bias"]
    expected = (["transformer.wte.weight", "transformer.wpe.weight"] + [f"transformer.h.0.{n}" for n in block]
                + ["transformer.ln_f.weight", "transformer.ln_f.bias", "lm_head.weight"])
    assert list(model.state_dict()) == expected


def test_lm_head_is_tied_to_the_token_embedding():
    model = tiny_gpt()
    assert model.lm_head.weight is model.transformer.wte.weight


def test_gpt2_initialisation():
    model = tiny_gpt(n_layer=4, n_embd=256, n_head=4, vocab_size=1024)
    c_proj = torch.cat([model.transformer.h[i].mlp.c_proj.weight.flatten() for i in range(4)])
    assert c_proj.std().item() == pytest.approx(0.02 / math.sqrt(2 * 4), rel=0.02)
    assert model.transformer.h[0].attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert model.transformer.wte.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert all(model.transformer.h[i].attn.c_attn.bias.abs().max() == 0 for i in range(4))


@pytest.mark.parametrize("name, n_layer, n_head, n_embd, non_embedding, total", [
    ("gpt2", 12, 12, 768, 123.65, 124.44),
    ("gpt2-medium", 24, 16, 1024, 353.77, 354.82),
    ("gpt2-large", 36, 20, 1280, 772.72, 774.03),
    ("gpt2-xl", 48, 25, 1600, 1555.97, 1557.61),
])
def test_gpt2_sizes(name, n_layer, n_head, n_embd, non_embedding, total):
    with torch.device("meta"):
        model = GPT(GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=50257, block_size=1024))
    assert round(model.get_num_params() / 1e6, 2) == non_embedding
    assert round(model.get_num_params(non_embedding=False) / 1e6, 2) == total


def test_bias_false_model_trains_saves_and_loads_back(tmp_path):
    model = tiny_gpt(bias=False).train()
    assert not any(name.endswith("bias") for name in model.state_dict())
    optimizer = model.configure_optimizers(0.1, 3e-3, (0.9, 0.95), "cpu")
    idx = torch.randint(0, 101, (4, 32), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(20):
        _, loss = model(idx[:, :-1], targets=idx[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0
    torch.save({"model_args": vars(model.config), "model": model.state_dict()}, tmp_path / "ckpt.pt")
    saved = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    loaded = GPT(GPTConfig(**saved["model_args"])).eval()
    loaded.load_state_dict(saved["model"])
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(idx, idx)[0], model(idx, idx)[0])


def test_flash_and_manual_attention_agree():
    model = tiny_gpt()
    perturb(model)
    idx = torch.randint(0, 101, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        flash_logits, flash_loss = model(idx, targets=idx)
        for block in model.transformer.h:
            block.attn.flash = False
        manual_logits, manual_loss = model(idx, targets=idx)
    assert (flash_logits - manual_logits).abs().max().item() < 1e-5
    assert abs(flash_loss.item() - manual_loss.item()) < 1e-6


def test_eval_mode_is_deterministic():
    model = tiny_gpt(dropout=0.2)
    idx = torch.randint(0, 101, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(idx, idx)[0], model(idx, idx)[0])


def test_loss_ignores_targets_of_minus_one():
    model = tiny_gpt()
    idx = torch.randint(0, 101, (1, 8), generator=torch.Generator().manual_seed(0))
    targets = idx.clone()
    targets[0, 4:] = -1
    with torch.no_grad():
        _, partial = model(idx, targets)
        logits, _ = model(idx, idx)
    expected = torch.nn.functional.cross_entropy(logits[0, :4], idx[0, :4])
    assert partial.item() == pytest.approx(expected.item(), abs=1e-6)


def test_a_sequence_longer_than_block_size_is_refused():
    with pytest.raises(ValueError, match="block size is only 32"):
        tiny_gpt()(torch.zeros(1, 33, dtype=torch.long))


def test_crop_block_size():
    model = tiny_gpt()
    model.crop_block_size(16)
    assert model.config.block_size == 16 and model.transformer.wpe.weight.shape == (16, 32)
    model(torch.zeros(1, 16, dtype=torch.long))


def test_weight_decay_applies_to_matrices_only():
    optimizer = tiny_gpt().configure_optimizers(0.1, 1e-3, (0.9, 0.95), "cpu")
    decayed, not_decayed = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and all(p.dim() >= 2 for p in decayed["params"])
    assert not_decayed["weight_decay"] == 0.0 and all(p.dim() == 1 for p in not_decayed["params"])


def test_estimate_mfu_counts_palm_flops():
    model = tiny_gpt()
    n, cfg = model.get_num_params(), model.config
    flops_per_iter = (6 * n + 12 * cfg.n_layer * cfg.n_head * (cfg.n_embd // cfg.n_head) * cfg.block_size) * cfg.block_size * 5
    assert model.estimate_mfu(5, 0.5, peak_flops=1e9) == pytest.approx(flops_per_iter / 0.5 / 1e9)


# generation ------------------------------------------------------------------------------------------------------

PROMPT = torch.tensor([[5, 17, 42, 8, 99], [1, 2, 3, 4, 5]])


def generate_both_ways(model, max_new_tokens, **kwargs):
    torch.manual_seed(7)
    cached = model.generate(PROMPT, max_new_tokens, **kwargs)
    torch.manual_seed(7)
    uncached = model.generate(PROMPT, max_new_tokens, use_cache=False, **kwargs)
    return cached, uncached


@pytest.mark.parametrize("kwargs", [dict(temperature=0), dict(top_k=10), dict(top_p=0.9), dict(temperature=1.3)],
                         ids=["greedy", "top_k", "top_p", "temperature"])
def test_cached_generation_gives_the_uncached_tokens_past_block_size(kwargs):
    model = tiny_gpt()
    perturb(model)
    cached, uncached = generate_both_ways(model, 60, **kwargs)  # 5 + 60 tokens: the context slides past 32
    assert cached.shape == (2, 65)
    assert torch.equal(cached, uncached)


def test_cached_logits_match_a_full_forward():
    model = tiny_gpt()
    perturb(model)
    from model import KVCache
    idx = torch.randint(0, 101, (2, 32), generator=torch.Generator().manual_seed(0))
    cache = [KVCache(32) for _ in range(2)]
    with torch.no_grad():
        full, _ = model(idx, targets=idx)
        model(idx[:, :20], kv_cache=cache)
        chunk, _ = model(idx[:, 20:25], targets=idx[:, 20:25], kv_cache=cache)  # several new tokens at once
        steps = [model(idx[:, t:t + 1], kv_cache=cache)[0] for t in range(25, 32)]
    assert (chunk - full[:, 20:25]).abs().max().item() < 1e-5
    assert (torch.cat(steps, 1) - full[:, 25:]).abs().max().item() < 1e-5


def test_generate_tokens_yields_each_token_as_it_comes():
    model = tiny_gpt()
    tokens = list(model.generate_tokens(PROMPT, 4, temperature=0))
    assert len(tokens) == 4 and all(t.shape == (2, 1) for t in tokens)
    assert torch.equal(torch.cat([PROMPT, *tokens], 1), model.generate(PROMPT, 4, temperature=0))


def test_a_prompt_longer_than_block_size_keeps_its_last_block_size_tokens():
    model = tiny_gpt()
    long_prompt = torch.randint(0, 101, (1, 50), generator=torch.Generator().manual_seed(0))
    out = model.generate(long_prompt, 3, temperature=0)
    with torch.no_grad():
        first = model(long_prompt[:, -32:])[0].argmax(-1)
    assert out.shape == (1, 53) and out[0, 50] == first[0, 0]


def test_each_sample_of_a_prompt_gets_the_single_greedy_samples_tokens():
    model = tiny_gpt()
    perturb(model)
    batch = model.generate(PROMPT, 60, temperature=0, num_samples=3)  # the context slides past 32
    assert batch.shape == (6, 65)
    for row, prompt in enumerate(PROMPT):  # the samples of one prompt are adjacent rows
        single = model.generate(prompt[None], 60, temperature=0)
        assert torch.equal(batch[3 * row:3 * row + 3], single.expand(3, -1))


@pytest.mark.parametrize("max_new_tokens", [20, 60], ids=["within_block_size", "past_block_size"])
def test_samples_of_one_prompt_differ_and_agree_with_and_without_the_cache(max_new_tokens):
    model = tiny_gpt()
    perturb(model)
    cached, uncached = generate_both_ways(model, max_new_tokens, num_samples=4, temperature=1.3)
    assert cached.shape == (8, 5 + max_new_tokens) and torch.equal(cached, uncached)
    assert len({tuple(row) for row in cached[:4, 5:].tolist()}) == 4


@pytest.mark.parametrize("prompt_tokens, max_new_tokens, positions", [(5, 10, 14), (5, 60, 32)])
def test_the_kv_cache_holds_the_rows_and_positions_the_generation_uses(prompt_tokens, max_new_tokens, positions):
    # the prompt and each new token but the last, never more than block_size (32): not block_size of every model
    model = tiny_gpt()
    caches = []  # each layer's attention is called with (x, its KVCache)
    for block in model.transformer.h:
        block.attn.register_forward_pre_hook(lambda attn, args: caches.append(args[1]))
    model.generate(torch.zeros(1, prompt_tokens, dtype=torch.long), max_new_tokens, num_samples=6)
    kv_cache = {id(c): c for c in caches if c is not None}.values()
    assert len(kv_cache) == 2 and all(c.k.shape == c.v.shape == (6, 4, positions, 8) for c in kv_cache)


@pytest.mark.parametrize("rows", [1, 10, 100])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_computes_nn_linears_numbers_for_any_number_of_rows(rows, bias):
    # a few rows without autograd take the (W @ x^T)^T way round: the same numbers, in the same layout
    from model import Linear
    torch.manual_seed(0)
    linear = Linear(32, 48, bias=bias)
    x = torch.randn(rows, 1, 32)
    with torch.no_grad():
        y = linear(x)
        expected = torch.nn.functional.linear(x, linear.weight, linear.bias)
    assert y.shape == (rows, 1, 48) and y.is_contiguous()
    assert (y - expected).abs().max().item() < 1e-6


def draws(logits, n=2000, **kwargs):
    torch.manual_seed(0)
    return set(sample_next_token(logits.expand(n, -1), **kwargs).flatten().tolist())


def test_sampling_draws_each_token_with_its_probability_and_never_an_impossible_one():
    logits = torch.log(torch.tensor([[0.1, 0.0, 0.6, 0.3, 0.0]]))  # ids 1 and 4 cannot be drawn
    torch.manual_seed(0)
    counts = sample_next_token(logits.expand(100_000, -1), top_k=None).flatten().bincount(minlength=5)
    assert counts[1] == counts[4] == 0
    assert (counts / 100_000 - torch.tensor([0.1, 0.0, 0.6, 0.3, 0.0])).abs().max() < 0.005  # over 3 standard errors


def test_temperature_zero_is_greedy():
    logits = torch.tensor([[0.1, 3.0, 2.9, -1.0]])
    assert draws(logits, temperature=0) == {1}


def test_top_k_keeps_exactly_k_tokens_on_ties():
    logits = torch.tensor([[2.0, 1.0, 1.0, 1.0, 0.0]])
    assert len(draws(logits, top_k=2)) == 2
    assert 0 in draws(logits, top_k=2)


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert draws(logits, top_p=0.7) == {0, 1}
    assert draws(logits, top_p=0.5) == {0}
    assert draws(logits, top_p=0.1) == {0}  # the most likely token always stays
    assert draws(logits, top_p=1e-300) == {0}  # even where top_p is 0 in float32 (found by the settings fuzzing)


def test_vocab_limit_never_samples_padding_ids():
    logits = torch.tensor([[0.0, 0.0, 5.0, 5.0]])  # the padding ids 2 and 3 are the most likely
    assert draws(logits, vocab_limit=2) == {0, 1}
    assert draws(logits, vocab_limit=2, temperature=0) == {0}


def test_sampling_at_a_tiny_temperature_in_float16_picks_the_most_likely_token():
    # 3.0 / 1e-6 overflows float16 (max 65504): the arithmetic must happen in float32
    logits = torch.tensor([[1.0, 3.0, 2.0]], dtype=torch.float16)
    assert draws(logits, n=100, temperature=1e-6) == {1}
    assert draws(logits, n=100, temperature=1e-6, top_k=2, top_p=0.9) == {1}


@pytest.mark.parametrize('temperature', [1e-45, 5e-324])
def test_sampling_at_the_smallest_temperatures_picks_the_most_likely_token(temperature):
    # even float32 overflows at 1e-45 (about its smallest number): dividing from the largest logit down keeps it 0;
    # 5e-324, the smallest float, is 0 in float32 (found by tests/test_settings_fuzz.py)
    logits = torch.tensor([[1.0, 3.0, 2.0]])
    assert draws(logits, n=100, temperature=temperature) == {1}


def test_untied_output_weights_are_refused(tmp_path):
    # our lm_head is the token embedding; a model with its own would load one of the two and compute wrong logits
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=101, n_positions=32, n_embd=32, n_layer=1, n_head=4,
                                    tie_word_embeddings=False))
    perturb(hf)
    assert not torch.equal(hf.lm_head.weight, hf.transformer.wte.weight)
    hf.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"tie_word_embeddings=True\); this model has its own lm_head"):
        GPT.from_pretrained(str(tmp_path))
