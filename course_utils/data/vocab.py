"""A word-level vocabulary for the Shapes world.

Ids 0-4 are the special tokens, then every word of the world's grammar in sorted order:

    0 <pad>   1 <start>   2 <end>   3 <unk>   4 <mask>   5 a   6 above   ...

Text is split on whitespace; there is no sub-word splitting and no punctuation. Turning
a batch of captions into a padded (N, context_length) tensor with start and end tokens is
left to the notebooks (tokenize, in 04_mini_clip).
"""

from __future__ import annotations

from collections.abc import Iterable

from .captions import caption_words
from .questions import question_words

PAD, START, END, UNK, MASK = "<pad>", "<start>", "<end>", "<unk>", "<mask>"
SPECIAL_TOKENS = (PAD, START, END, UNK, MASK)


class Vocabulary:
    """Maps words to integer ids and back.

    Vocabulary(words): the special tokens take ids 0-4 (pad_id=0, start_id=1, end_id=2,
    unk_id=3, mask_id=4); the distinct other words follow in sorted order.
    """

    pad_id, start_id, end_id, unk_id, mask_id = range(len(SPECIAL_TOKENS))
    special_ids = tuple(range(len(SPECIAL_TOKENS)))

    def __init__(self, words: Iterable[str]) -> None:
        words = sorted(set(words) - set(SPECIAL_TOKENS))
        for word in words:
            if not word or word != word.strip() or len(word.split()) != 1:
                raise ValueError(f"a vocabulary word must be one non-empty token, got {word!r}")
        self._words = list(SPECIAL_TOKENS) + words
        self._ids = {word: i for i, word in enumerate(self._words)}

    def __len__(self) -> int:
        return len(self._words)

    def __contains__(self, word: str) -> bool:
        return word in self._ids

    def __getitem__(self, word: str) -> int:
        """Id of a word; unk_id for a word not in the vocabulary."""
        return self._ids.get(word, self.unk_id)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens: {' '.join(self._words[:12])} ...)"

    @property
    def words(self) -> list[str]:
        """All tokens, specials included, in id order."""
        return list(self._words)

    def word(self, index: int) -> str:
        """The token with this id."""
        index = int(index)
        if not 0 <= index < len(self):
            raise ValueError(f"token id must be in [0, {len(self)}), got {index}")
        return self._words[index]

    def encode(self, text: str) -> list[int]:
        """Ids of the whitespace-separated words of text (unknown -> unk_id), no specials."""
        return [self[word] for word in text.split()]

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """Words of ids joined by spaces; skip_special drops every special token.

        ids may be a list, a numpy array or a 1-D tensor of integers.
        """
        tokens = [self.word(int(i)) for i in ids]
        if skip_special:
            tokens = [t for t in tokens if t not in SPECIAL_TOKENS]
        return " ".join(tokens)


def build_vocabulary() -> Vocabulary:
    """The Shapes-world vocabulary: every word a caption, prompt, question or answer can hold.

    Built from the grammar (caption_words, question_words), not from a sample of text.
    """
    return Vocabulary(caption_words() | question_words())
