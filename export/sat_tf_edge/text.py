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


# Words a caption may say twice ("a man and a woman on a bench", "two dogs and two cats"):
# articles, prepositions, conjunctions, pronouns, auxiliaries, numbers and the like. Every other
# word names something (a noun, a verb, an adjective), and said twice it is the repetition people
# seldom write: "a bathroom with a toilet and a toilet", "a plate of food on a plate".
FUNCTION_WORDS = frozenset(
    """a an the this that these those some each other another one two three four five six several many
    of on in at to into onto from with without by for about near next beside behind under over above
    below across through along around between up down out off top front while as than
    and or but if so then there here
    is are was were be been being am has have had do does doing can will it its it's he she they them
    his her their him who which what someone something
    """.split()
) | {"<pad>", "<start>", "<end>", "<unk>", "'s", ".", ","}


def content_word_ids(vocabulary: Sequence[str], function_words: frozenset[str] = FUNCTION_WORDS) -> tuple[int, ...]:
    """The ids of the vocabulary's content words (not in `function_words`, nor a special token):
    the words `no_repeat_content_words` lets a caption say once.

    Example:
        >>> content_word_ids(["<pad>", "<start>", "<end>", "<unk>", "a", "dog", "on", "grass"])
        (5, 7)
    """
    specials = {"<pad>", "<start>", "<end>", "<unk>"}
    return tuple(i for i, word in enumerate(vocabulary) if word not in function_words and word not in specials)


def repeated_content_words(caption: str) -> list[str]:
    """The content words a caption says more than once, in order of their second mention.

    Example:
        >>> repeated_content_words("a plate of food on a plate with a fork")
        ['plate']
    """
    seen: set[str] = set()
    repeated = []
    for word in caption.lower().split():
        if word in FUNCTION_WORDS:
            continue
        if word in seen and word not in repeated:
            repeated.append(word)
        seen.add(word)
    return repeated
