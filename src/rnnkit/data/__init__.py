"""Data: text for language models, labelled sequences, time series, built-in examples.

``Vocab`` maps characters or words to ids; ``encode_file`` streams a UTF-8 file into
an int32 id array; ``split_tokens`` keeps its tail for validation; ``StreamBatches``
cuts ids into time-major chunks of parallel streams for truncated BPTT; the built-in
corpus is Python's own standard library source. ``read_labeled`` reads labelled
sequences (CSV, JSON lines, texts) for classification, ``digits_splits`` the built-in
digits; ``prepare`` cuts series into forecasting windows with a ``Scaler`` fitted on
the training rows, ``load_example`` gives the built-in series.
"""

from rnnkit.data.buckets import BucketBatches
from rnnkit.data.columns import read_columns, write_columns
from rnnkit.data.corpus import (
    BUILTIN_CORPUS_FILES,
    BUILTIN_CORPUS_NAME,
    builtin_corpus_files,
    write_builtin_corpus,
)
from rnnkit.data.digits import digits_splits, load_digits_sequences
from rnnkit.data.labeled import (
    LabeledSequences,
    LabeledTexts,
    from_arrays,
    read_csv_sequences,
    read_jsonl_sequences,
    read_labeled,
    read_text_csv,
    read_text_folder,
    stratified_split,
)
from rnnkit.data.pairs import (
    PairVocab,
    encode_pairs,
    encode_sources,
    read_pairs,
    read_sources,
    split_pairs,
)
from rnnkit.data.seq2seq_tasks import TASKS as SEQ2SEQ_TASKS
from rnnkit.data.seq2seq_tasks import make_splits, make_task
from rnnkit.data.series import EXAMPLES, Example, load_example, read_series_csv
from rnnkit.data.stream import StreamBatches
from rnnkit.data.synthetic import adding_problem
from rnnkit.data.text import (
    encode_file,
    read_text_chunks,
    read_token_chunks,
    split_tokens,
)
from rnnkit.data.vocab import UNK_ID, UNK_TOKEN, VOCAB_KINDS, Vocab, check_kind, tokenize
from rnnkit.data.windows import (
    Prepared,
    Scaler,
    Split,
    Windows,
    make_windows,
    prepare,
    split_rows,
    window_origins,
)

__all__ = [
    "BUILTIN_CORPUS_FILES",
    "BUILTIN_CORPUS_NAME",
    "EXAMPLES",
    "SEQ2SEQ_TASKS",
    "UNK_ID",
    "UNK_TOKEN",
    "VOCAB_KINDS",
    "BucketBatches",
    "Example",
    "LabeledSequences",
    "LabeledTexts",
    "PairVocab",
    "Prepared",
    "Scaler",
    "Split",
    "StreamBatches",
    "Vocab",
    "Windows",
    "adding_problem",
    "builtin_corpus_files",
    "check_kind",
    "digits_splits",
    "encode_file",
    "encode_pairs",
    "encode_sources",
    "from_arrays",
    "load_digits_sequences",
    "load_example",
    "make_splits",
    "make_task",
    "make_windows",
    "prepare",
    "read_columns",
    "read_csv_sequences",
    "read_jsonl_sequences",
    "read_labeled",
    "read_pairs",
    "read_series_csv",
    "read_sources",
    "read_text_chunks",
    "read_text_csv",
    "read_text_folder",
    "read_token_chunks",
    "split_pairs",
    "split_rows",
    "split_tokens",
    "stratified_split",
    "tokenize",
    "window_origins",
    "write_builtin_corpus",
    "write_columns",
]
