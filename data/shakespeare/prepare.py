"""
Prepare the Shakespeare dataset for GPT-2 BPE language modeling: encodes the
text with tiktoken's gpt2 encoding and saves train.bin and val.bin (uint16 ids).

    python data/shakespeare/prepare.py                 # downloads input.txt if absent
    python data/shakespeare/prepare.py --input PATH    # or use a local copy
    python data/shakespeare/prepare.py --out_dir DIR   # write the outputs to DIR, not here
stdout holds what was written and a command that trains on it in minutes on this
machine; notes and progress go to stderr.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))  # the repo root (see corpus.py)
import errors  # noqa: E402
errors.install()
import corpus  # noqa: E402
import tokenizer  # noqa: E402

# the tiny shakespeare dataset: downloaded when absent
args = corpus.parse_args(__doc__, input=None, url=corpus.TINY_SHAKESPEARE_URL,
                         out_dir=os.path.dirname(os.path.abspath(__file__)))
out = errors.result_stream()  # what was written (corpus.report_dataset); notes and progress go to stderr
t0 = time.time()
data = corpus.tiny_shakespeare(args)
n = len(data)
train_data = data[:int(n*0.9)]
val_data = data[int(n*0.9):]

# encode with tiktoken gpt2 bpe (encode_ordinary's ids; no <|endoftext|> added, as nanoGPT)
gpt2 = tokenizer.ExactBPE(tokenizer.GPT2_VOCAB)
train_ids = gpt2.reference_ids(train_data).astype('uint16')
val_ids = gpt2.reference_ids(val_data).astype('uint16')

# export to bin files: both move in together
with corpus.new_dataset(args.out_dir, ['train.bin', 'val.bin']) as built:
    corpus.write_ids(built['train.bin'], train_ids)
    corpus.write_ids(built['val.bin'], val_ids)
corpus.report_dataset(out, args.out_dir, list(built), {'train': len(train_ids), 'val': len(val_ids)},
                      time.time() - t0, gpt2.vocab['vocab_size'])

# train.bin has 301,966 tokens
# val.bin has 36,059 tokens
