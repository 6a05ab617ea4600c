"""
Full definition of a GPT Language Model, all of it in this single file.
References:
1) the official GPT-2 TensorFlow implementation released by OpenAI:
https://github.com/openai/gpt-2/blob/master/src/model.py
2) huggingface/transformers PyTorch implementation:
https://github.com/huggingface/transformers/blob/main/src/transformers/models/gpt2/modeling_gpt2.py
Parameter names, initialisation and checkpoints are nanoGPT's, so its checkpoints load here and ours there.
"""

import inspect
import math
import os
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


class LayerNorm(nn.Module):
    """ LayerNorm but with an optional bias. PyTorch doesn't support simply bias=False """

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, input):
        return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)


class Linear(nn.Linear):
    """nn.Linear, but a few rows on the CPU without autograd (a step of generation) are multiplied as (W @ x^T)^T:
    MKL takes about half the time that way round, where x @ W^T has it repack all of W for every call."""

    def forward(self, input):
        rows = input.numel() // self.in_features
        if input.device.type != 'cpu' or torch.is_grad_enabled() or not 4 <= rows <= 64:
            return super().forward(input)
        x = input.reshape(rows, self.in_features).t()
        y = self.weight @ x if self.bias is None else torch.addmm(self.bias[:, None], self.weight, x)
        return y.t().contiguous().view(*input.shape[:-1], self.out_features)


class KVCache:
    """One layer's keys and values of the positions seen so far, so generate() runs only new tokens through the model.
    Room for `positions` positions of each row, taken on the first append: the positions a generation will use."""

    def __init__(self, positions):
        self.positions = positions
        self.length = 0  # positions stored
        self.k = self.v = None

    def append(self, k, v):
        """Stores k, v (B, nh, T, hs) after the stored positions; returns the keys and values of all positions."""
        if self.k is None:
            B, nh, _, hs = k.shape
            self.k = k.new_empty(B, nh, self.positions, hs)
            self.v = v.new_empty(B, nh, self.positions, hs)
        end = self.length + k.size(2)
        self.k[:, :, self.length:end] = k
        self.v[:, :, self.length:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def repeat_rows(self, n):
        """Each row becomes n adjacent rows holding its keys and values: n continuations of one prompt."""
        self.k = self.k.repeat_interleave(n, dim=0)
        self.v = self.v.repeat_interleave(n, dim=0)


class CausalSelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        # key, query, value projections for all heads, but in a batch
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        # output projection
        self.c_proj = Linear(config.n_embd, config.n_embd, bias=config.bias)
        # regularization
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        # flash attention through scaled_dot_product_attention; False selects the plain masked softmax, same numbers
        self.flash = True

    def forward(self, x, kv_cache=None):
        B, T, C = x.size() # batch size, sequence length, embedding dimensionality (n_embd)
        past = 0 if kv_cache is None else kv_cache.length  # positions before x, already in the cache

        # calculate query, key, values for all heads in batch and move head forward to be the batch dim
        q, k, v  = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) # (B, nh, T, hs)
        if kv_cache is not None:
            k, v = kv_cache.append(k, v) # (B, nh, past + T, hs)

        # causal self-attention; Self-attend: (B, nh, T, hs) x (B, nh, hs, past + T) -> (B, nh, T, past + T)
        dropout_p = self.dropout if self.training else 0.0
        if self.flash and (past == 0 or T == 1): # one new position sees every key: no mask to build
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=past == 0)
        else:
            # query i sits at position past + i and sees keys 0..past + i
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            if self.flash:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
            else:
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
                att = att.masked_fill(~mask, float('-inf'))
                att = F.softmax(att, dim=-1)
                att = self.attn_dropout(att)
                y = att @ v # (B, nh, T, past + T) x (B, nh, past + T, hs) -> (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C) # re-assemble all head outputs side by side

        # output projection
        y = self.resid_dropout(self.c_proj(y))
        return y


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_fc    = Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu    = nn.GELU(approximate=config.gelu_approximate)
        self.c_proj  = Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        x = self.c_fc(x)
        x = self.gelu(x)
        x = self.c_proj(x)
        x = self.dropout(x)
        return x


class Block(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, kv_cache=None):
        x = x + self.attn(self.ln_1(x), kv_cache)
        x = x + self.mlp(self.ln_2(x))
        return x


GPT2_MODELS = ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl') # OpenAI's, on the Hugging Face Hub

# openai checkpoints use a "Conv1D" module, but we only want to use a vanilla Linear
# this means that we have to transpose these weights when we import them (and when export.py exports ours)
CONV1D_WEIGHTS = ('attn.c_attn.weight', 'attn.c_proj.weight', 'mlp.c_fc.weight', 'mlp.c_proj.weight')


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304 # GPT-2 vocab_size of 50257, padded up to nearest multiple of 64 for efficiency
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True # True: bias in Linears and LayerNorms, like GPT-2. False: a bit better and faster
    # OpenAI's GPT-2 weights were trained with the tanh approximation of GELU ('tanh'); nanoGPT trains with exact GELU
    gelu_approximate: str = 'none'


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        assert config.vocab_size is not None
        assert config.block_size is not None
        if config.n_embd % config.n_head != 0:
            raise ValueError(f"n_embd={config.n_embd} must be divisible by n_head={config.n_head}")
        self.config = config

        self.transformer = nn.ModuleDict(dict(
            wte = nn.Embedding(config.vocab_size, config.n_embd),
            wpe = nn.Embedding(config.block_size, config.n_embd),
            drop = nn.Dropout(config.dropout),
            h = nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f = LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight # https://paperswithcode.com/method/weight-tying

        # init all weights
        self.apply(self._init_weights)
        # apply special scaled init to the residual projections, per GPT-2 paper
        for pn, p in self.named_parameters():
            if pn.endswith('c_proj.weight'):
                torch.nn.init.normal_(p, mean=0.0, std=0.02/math.sqrt(2 * config.n_layer))

        # report number of parameters
        print("number of parameters: %.2fM" % (self.get_num_params()/1e6,))

    def get_num_params(self, non_embedding=True):
        """
        Return the number of parameters in the model.
        For non-embedding count (default), the position embeddings get subtracted.
        The token embeddings would too, except due to the parameter sharing these
        params are actually used as weights in the final layer, so we include them.
        """
        n_params = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n_params -= self.transformer.wpe.weight.numel()
        return n_params

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None, kv_cache=None):
        """
        idx (B, T) token ids. With targets (B, T): (logits (B, T, vocab), loss), ignoring targets of -1.
        Without: (logits of the last position (B, 1, vocab), None).
        kv_cache: a KVCache per layer holding the earlier positions; idx are then the tokens that follow them.
        """
        device = idx.device
        b, t = idx.size()
        past = 0 if kv_cache is None else kv_cache[0].length
        if past + t > self.config.block_size:
            raise ValueError(f"Cannot forward sequence of length {past + t}, block size is only {self.config.block_size}")
        pos = torch.arange(past, past + t, dtype=torch.long, device=device) # shape (t)

        # forward the GPT model itself
        tok_emb = self.transformer.wte(idx) # token embeddings of shape (b, t, n_embd)
        pos_emb = self.transformer.wpe(pos) # position embeddings of shape (t, n_embd)
        x = self.transformer.drop(tok_emb + pos_emb)
        for i, block in enumerate(self.transformer.h):
            x = block(x, None if kv_cache is None else kv_cache[i])
        x = self.transformer.ln_f(x)

        if targets is not None:
            # if we are given some desired targets also calculate the loss
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        else:
            # inference-time mini-optimization: only forward the lm_head on the very last position
            logits = self.lm_head(x[:, [-1], :]) # note: using list [-1] to preserve the time dim
            loss = None

        return logits, loss

    def crop_block_size(self, block_size):
        # model surgery to decrease the block size if necessary
        # e.g. we may load the GPT2 pretrained model checkpoint (block size 1024)
        # but want to use a smaller block size for some smaller, simpler model
        assert block_size <= self.config.block_size
        self.config.block_size = block_size
        self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size])

    @classmethod
    def from_pretrained(cls, name_or_path, override_args=None):
        """GPT-2 weights: 'gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl' from the Hugging Face hub,
        or a directory written by transformers' GPT2LMHeadModel.save_pretrained."""
        override_args = override_args or {} # default to empty dict
        # only dropout can be overridden see more notes below
        if any(k != 'dropout' for k in override_args):
            raise ValueError(f"only dropout can be overridden, got {sorted(override_args)}")
        if not (name_or_path in GPT2_MODELS or os.path.isdir(name_or_path)):
            raise ValueError(f"{name_or_path!r} is neither a GPT-2 model name (gpt2, gpt2-medium, gpt2-large, gpt2-xl) "
                             "nor a directory saved by transformers")
        from transformers import GPT2LMHeadModel
        print("loading weights from pretrained gpt: %s" % name_or_path)
        if not os.path.isdir(name_or_path):
            check_hub_reachable(name_or_path)
        model_hf = GPT2LMHeadModel.from_pretrained(name_or_path)
        hf = model_hf.config

        # the GPT-2 architecture is fixed apart from its sizes: refuse variants this model does not compute
        gelu = {'gelu_new': 'tanh', 'gelu_pytorch_tanh': 'tanh', 'gelu': 'none'}.get(hf.activation_function)
        if gelu is None or hf.n_inner not in (None, 4 * hf.n_embd) or hf.layer_norm_epsilon != 1e-5 \
                or hf.scale_attn_by_inverse_layer_idx or not hf.scale_attn_weights:
            raise ValueError(f"{name_or_path}: only the GPT-2 architecture is supported (activation "
                             f"{hf.activation_function}, n_inner {hf.n_inner}, layer_norm_epsilon {hf.layer_norm_epsilon})")
        if not hf.tie_word_embeddings:
            # our lm_head is the token embedding; loading both would keep one of them and compute other logits
            raise ValueError(f"{name_or_path}: only the GPT-2 architecture is supported, whose output layer is its "
                             "token embedding (tie_word_embeddings=True); this model has its own lm_head")
        config_args = dict(n_layer=hf.n_layer, n_head=hf.n_head, n_embd=hf.n_embd, block_size=hf.n_positions,
                           vocab_size=hf.vocab_size, bias=True, gelu_approximate=gelu)
        print(f"forcing vocab_size={hf.vocab_size}, block_size={hf.n_positions}, bias=True, "
              f"{'the tanh approximation of GELU' if gelu == 'tanh' else 'exact GELU'}")
        if 'dropout' in override_args:
            print(f"overriding dropout rate to {override_args['dropout']}")
            config_args['dropout'] = override_args['dropout']
        model = GPT(GPTConfig(**config_args))

        sd = {}
        for k, v in model_hf.state_dict().items():
            if k.endswith(('.attn.masked_bias', '.attn.bias')): # buffers (the causal mask), not parameters
                continue
            sd[k] = v.t() if k.endswith(CONV1D_WEIGHTS) else v
        sd.setdefault('lm_head.weight', sd['transformer.wte.weight']) # tied, so some versions save it once
        model.load_state_dict(sd) # strict: every parameter of ours comes from GPT-2, and nothing else does
        return model

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type, fused=None):
        # fused: None uses the fused AdamW where torch has it (cuda, cpu); False the for-each one, as nanoGPT off CUDA
        # start with all of the candidate parameters
        param_dict = {pn: p for pn, p in self.named_parameters()}
        # filter out those that do not require grad
        param_dict = {pn: p for pn, p in param_dict.items() if p.requires_grad}
        # create optim groups. Any parameters that is 2D will be weight decayed, otherwise no.
        # i.e. all weight tensors in matmuls + embeddings decay, all biases and layernorms don't.
        decay_params = [p for n, p in param_dict.items() if p.dim() >= 2]
        nodecay_params = [p for n, p in param_dict.items() if p.dim() < 2]
        optim_groups = [
            {'params': decay_params, 'weight_decay': weight_decay},
            {'params': nodecay_params, 'weight_decay': 0.0}
        ]
        num_decay_params = sum(p.numel() for p in decay_params)
        num_nodecay_params = sum(p.numel() for p in nodecay_params)
        print(f"num decayed parameter tensors: {len(decay_params)}, with {num_decay_params:,} parameters")
        print(f"num non-decayed parameter tensors: {len(nodecay_params)}, with {num_nodecay_params:,} parameters")
        # Create AdamW optimizer and use the fused version if it is available: one kernel for all parameters
        fused_available = 'fused' in inspect.signature(torch.optim.AdamW).parameters
        use_fused = fused_available and device_type in ('cuda', 'cpu') and fused is not False
        extra_args = dict(fused=True) if use_fused else dict()
        optimizer = torch.optim.AdamW(optim_groups, lr=learning_rate, betas=betas, **extra_args)
        why_not = "" if use_fused or fused is False else f" (not available on {device_type}; using the for-each AdamW)"
        print(f"using fused AdamW: {use_fused}{why_not}")

        return optimizer

    def estimate_mfu(self, fwdbwd_per_iter, dt, peak_flops):
        """ model flops utilization (MFU): model flops per second over the device's peak_flops (see hardware.py) """
        # first estimate the number of flops we do per iteration.
        # see PaLM paper Appendix B as ref: https://arxiv.org/abs/2204.02311
        N = self.get_num_params()
        cfg = self.config
        L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.n_embd//cfg.n_head, cfg.block_size
        flops_per_token = 6*N + 12*L*H*Q*T
        flops_per_fwdbwd = flops_per_token * T
        flops_per_iter = flops_per_fwdbwd * fwdbwd_per_iter
        # express our flops throughput as ratio of the device's peak flops
        flops_achieved = flops_per_iter * (1.0/dt) # per second
        mfu = flops_achieved / peak_flops
        return mfu

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, num_samples=1, **kwargs):
        """
        Take a conditioning sequence of indices idx (LongTensor of shape (b,t)) and complete
        the sequence max_new_tokens times, feeding the predictions back into the model each time.
        Most likely you'll want to make sure to be in model.eval() mode of operation for this.
        Returns (b * num_samples, t + max_new_tokens); keyword arguments as generate_tokens().
        """
        tokens = list(self.generate_tokens(idx, max_new_tokens, temperature, top_k, top_p, num_samples=num_samples,
                                           **kwargs))
        return torch.cat((idx.repeat_interleave(num_samples, dim=0), *tokens), dim=1)

    @torch.no_grad()
    def generate_tokens(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, num_samples=1,
                        use_cache=True, vocab_limit=None):
        """
        Yields each new token (b * num_samples, 1) as soon as it is sampled. temperature=0 picks the most likely
        token; top_k keeps the k most likely, top_p the smallest set whose probability reaches p.
        num_samples: each row of idx is continued that many times, in adjacent rows. The prompt runs through the
        model once and its keys and values are copied to each of them: a batch shares each read of the weights,
        the cost of a token at batch 1.
        vocab_limit: only ids below it are sampled (a padded vocab's extra ids mean nothing to the tokenizer).
        use_cache=False runs the whole context through the model for every token, as nanoGPT does: same tokens, slower.
        """
        block_size = self.config.block_size
        # the cache holds the prompt and every new token but the last, up to block_size: the positions used
        positions = min(idx.size(1) + max_new_tokens - 1, block_size)
        kv_cache = [KVCache(positions) for _ in range(self.config.n_layer)] if use_cache else None
        for i in range(max_new_tokens):
            if kv_cache is not None and idx.size(1) <= block_size:
                # the prompt, then each new token after the positions cached
                logits, _ = self(idx if i == 0 else idx[:, -1:], kv_cache=kv_cache)
            else:
                # the context is the last block_size tokens at positions 0..block_size-1, as in nanoGPT; once it
                # slides every position shifts, so nothing cached could be reused
                kv_cache = None
                logits, _ = self(idx[:, -block_size:])
            if i == 0 and num_samples > 1:
                for layer_cache in kv_cache or []: # first: the most memory, so that too many rows fail at once
                    layer_cache.repeat_rows(num_samples)
                idx, logits = idx.repeat_interleave(num_samples, dim=0), logits.repeat_interleave(num_samples, dim=0)
            idx_next = sample_next_token(logits[:, -1, :], temperature, top_k, top_p, vocab_limit)
            idx = torch.cat((idx, idx_next), dim=1)
            yield idx_next


def check_hub_reachable(name):
    """Raises an OSError saying how to work offline when GPT-2's weights named name are neither in the Hugging Face
    cache nor downloadable. transformers would retry for half a minute and end in a long message; this asks once."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
    if isinstance(try_to_load_from_cache(name, 'config.json'), str):
        return
    try:
        get_hf_file_metadata(hf_hub_url(name, 'config.json'))
    except Exception as e:  # no network, a proxy or firewall in the way, HF_HUB_OFFLINE=1
        raise OSError(f"cannot download {name}'s weights from the Hugging Face Hub ({type(e).__name__}); offline, "
                      f"run GPT2LMHeadModel.from_pretrained('{name}').save_pretrained('{name}') on a machine with "
                      f"network, copy that directory here and pass its path as init_from, or copy that machine's "
                      f"Hugging Face cache (~/.cache/huggingface, or $HF_HOME) here") from e


def sample_next_token(logits, temperature=1.0, top_k=None, top_p=None, vocab_limit=None):
    """logits (b, vocab) -> token ids (b, 1)."""
    if vocab_limit is not None:
        logits = logits[:, :vocab_limit]
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() # in float32 whatever the model computed in
    candidates = None # the ids whose logits these are: every id
    if top_k is not None:
        # exactly the k best, even on ties, in the order of their ids: the draw below then picks the token that it
        # would among every id with the others at probability 0, for the work of k
        logits, candidates = torch.topk(logits, min(top_k, logits.size(-1)))
        candidates, order = candidates.sort(dim=-1)
        logits = logits.gather(-1, order)
    # from the largest logit down: a tiny temperature then sends the others to -inf, never the largest to inf (which
    # would make every probability nan); one below float32's smallest normal number would round to 0 (0 / 0: nan)
    logits = (logits - logits.max(dim=-1, keepdim=True).values) / max(temperature, torch.finfo(torch.float32).tiny)
    if top_p is not None:
        sorted_logits, sorted_indices = torch.sort(logits, descending=True)
        sorted_probs = F.softmax(sorted_logits, dim=-1)
        # drop a token when the more likely ones already reach top_p; the most likely token always stays
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p
        outside[:, 0] = False # even where top_p rounds to 0 in float32 (below 1e-45)
        sorted_logits = sorted_logits.masked_fill(outside, float('-inf'))
        logits = torch.full_like(logits, float('-inf')).scatter(-1, sorted_indices, sorted_logits)
    probs = F.softmax(logits, dim=-1)
    # the draw of torch.multinomial(probs, 1), which takes ~2 ms per row of GPT-2's 50k probabilities on a CPU: a
    # uniform point of each row's cumulative sum falls in token i's stretch with probability probs[i] (0: never)
    cumulative = probs.cumsum(dim=-1)
    point = torch.rand(probs.size(0), 1, device=probs.device) * cumulative[:, -1:]
    token = torch.searchsorted(cumulative, point, right=True)
    return token if candidates is None else candidates.gather(-1, token)
