"""Text data for language modelling: vocabularies, streamed encoding, BPTT batches.

``Vocab`` maps characters or words to ids; ``encode_file`` streams a UTF-8 file into
an int32 id array; ``split_tokens`` keeps its tail for validation; ``StreamBatches``
cuts ids into time-major chunks of parallel streams for truncated BPTT; the built-in
corpus is Python's own standard library source.
"""

from rnnkit.data.corpus import (
    BUILTIN_CORPUS_FILES,
    BUILTIN_CORPUS_NAME,
    builtin_corpus_files,
    write_builtin_corpus,
)
from rnnkit.data.stream import StreamBatches
from rnnkit.data.synthetic import adding_problem
from rnnkit.data.text import (
    encode_file,
    read_text_chunks,
    read_token_chunks,
    split_tokens,
)
from rnnkit.data.vocab import UNK_ID, UNK_TOKEN, VOCAB_KINDS, Vocab, check_kind, tokenize

__all__ = [
    "BUILTIN_CORPUS_FILES",
    "BUILTIN_CORPUS_NAME",
    "UNK_ID",
    "UNK_TOKEN",
    "VOCAB_KINDS",
    "StreamBatches",
    "Vocab",
    "adding_problem",
    "builtin_corpus_files",
    "check_kind",
    "encode_file",
    "read_text_chunks",
    "read_token_chunks",
    "split_tokens",
    "tokenize",
    "write_builtin_corpus",
]
