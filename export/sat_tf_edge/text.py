"""Token ids -> caption text: the one detokeniser, shared by the library, the edge runtime and
(as the same rule in TensorFlow ops) the SavedModel.

Rule: stop at the first `<end>`; drop `<pad>` and `<start>`; join the remaining words with spaces.
"""

from __future__ import annotations

from typing import Iterable, Sequence

# The special tokens' ids, fixed by sat_tf's tokenizer (`sat_tf.data.tokenizer.SPECIAL_TOKENS`).
PAD_ID, START_ID, END_ID, UNKNOWN_ID = 0, 1, 2, 3


def caption_text(
    tokens: Iterable[int],
    vocabulary: Sequence[str],
    pad_id: int = PAD_ID,
    start_id: int = START_ID,
    end_id: int = END_ID,
) -> str:
    """The caption a row of token ids spells.

    Example:
        >>> caption_text([1, 4, 5, 2, 0], ["<pad>", "<start>", "<end>", "<unk>", "a", "dog"])
        'a dog'
    """
    words = []
    for token in tokens:
        token = int(token)
        if token == end_id:
            break
        if token not in (pad_id, start_id):
            words.append(vocabulary[token])
    return " ".join(words)
