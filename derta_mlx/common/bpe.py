"""BPE merges for a tokenizer that ranks whole pieces (tiktoken, SentencePiece BPE), so that a
Hugging Face BPE model picks pairs in the same order.

Such tokenizers merge the adjacent pair whose concatenation ranks best. Listing every split of
every piece whose halves are pieces too, ordered by the whole piece's rank, gives BPE the same
pair priorities.
"""

from typing import Callable, Dict, Hashable, List, Sequence, Tuple


def split_merges(pieces: Dict[Sequence, Hashable], key: Callable[[Sequence, Sequence, Sequence], tuple]
                 ) -> List[Tuple[Sequence, Sequence]]:
    """(left, right) pairs of every piece in `pieces` (str or bytes) cut in two, both halves
    pieces, best first: sorted by `key(piece, left, right)`, and within one piece by the cut
    (which is the halves' lexicographic order)."""
    ranked = []
    for piece in pieces:
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in pieces and right in pieces:
                ranked.append((key(piece, left, right), left, right))
    ranked.sort(key=lambda row: row[0])  # stable: one piece's cuts stay shortest-left first
    return [(left, right) for _, left, right in ranked]
