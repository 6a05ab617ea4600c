"""
Saves the openwebtext dataset to train.bin and val.bin (GPT-2 BPE ids as uint16)
for training. Following was helpful:
https://github.com/HazyResearch/flash-attention/blob/main/training/src/datamodules/language_modeling_hf.py

    python data/openwebtext/prepare.py [--num_proc N] [--dataset NAME]

Needs ~54GB in the huggingface cache and ~17GB here; see readme.md.
"""
import argparse
import os

import numpy as np
import tiktoken
from tqdm import tqdm

enc = tiktoken.get_encoding("gpt2")


def split_train_val(dataset):
    # owt by default only contains the 'train' split, so create a small val split
    split_dataset = dataset.train_test_split(test_size=0.0005, seed=2357, shuffle=True)
    split_dataset['val'] = split_dataset.pop('test')  # rename the test split to val
    return split_dataset


def process(example):
    ids = enc.encode_ordinary(example['text'])  # encode_ordinary ignores any special tokens
    ids.append(enc.eot_token)  # add the end of text token, 50256 for gpt2 bpe
    return {'ids': ids, 'len': len(ids)}


def write_split(dset, filename, total_batches=1024):
    """Concatenate the 'ids' of every row of dset into filename as uint16, one contiguous shard at a time."""
    # [:] reads a whole column at once: numpy iterating a datasets>=4 Column row by row is ~100x slower
    arr_len = int(np.sum(dset.with_format('numpy')['len'][:], dtype=np.uint64))
    dtype = np.uint16  # (can do since enc.max_token_value == 50256 is < 2**16)
    # fill a temporary file and rename it at the end, so an interrupted run never leaves a half-written .bin
    tmp = filename + '.tmp'
    arr = np.memmap(tmp, dtype=dtype, mode='w+', shape=(arr_len,))
    num_shards = min(total_batches, len(dset))  # more shards than rows would make empty shards
    idx = 0
    for shard_idx in tqdm(range(num_shards), desc=f'writing {filename}'):
        # only one shard is in memory at a time
        batch = dset.shard(num_shards=num_shards, index=shard_idx, contiguous=True).with_format('numpy')
        arr_batch = np.concatenate(batch['ids'][:])
        arr[idx : idx + len(arr_batch)] = arr_batch
        idx += len(arr_batch)
    assert idx == arr_len
    arr.flush()
    del arr  # close the memmap before renaming its file
    os.replace(tmp, filename)


if __name__ == '__main__':
    from datasets import load_dataset  # huggingface datasets

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # a good number of workers for .map() is ~ the number of cpu cores // 2
    parser.add_argument('--num_proc', type=int, default=max(1, (os.cpu_count() or 2) // 2),
                        help="worker processes for downloading and tokenizing (default: cpu count // 2)")
    parser.add_argument('--dataset', default='openwebtext', help="Hugging Face dataset with a 'text' column")
    args = parser.parse_args()

    # takes 54GB in huggingface .cache dir, about 8M documents (8,013,769)
    dataset = load_dataset(args.dataset, num_proc=args.num_proc)
    split_dataset = split_train_val(dataset['train'])

    # this results in:
    # >>> split_dataset
    # DatasetDict({
    #     train: Dataset({
    #         features: ['text'],
    #         num_rows: 8009762
    #     })
    #     val: Dataset({
    #         features: ['text'],
    #         num_rows: 4007
    #     })
    # })

    # tokenize the dataset
    tokenized = split_dataset.map(
        process,
        remove_columns=['text'],
        desc="tokenizing the splits",
        num_proc=args.num_proc,
    )

    # concatenate all the ids in each dataset into one large file we can use for training
    for split, dset in tokenized.items():
        write_split(dset, os.path.join(os.path.dirname(os.path.abspath(__file__)), f'{split}.bin'))

    # train.bin is ~17GB, val.bin ~8.5MB
    # train has ~9B tokens (9,035,582,198)
    # val has ~4M tokens (4,434,897)

    # to read the bin files later, e.g. with numpy:
    # m = np.memmap('train.bin', dtype=np.uint16, mode='r')
