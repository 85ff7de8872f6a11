"""The one order in which a reduction's partials are merged: a fixed tree over the plan.

Float merges (a sum, Chan's update of a mean) are associative only up to rounding, so
the bits of a result depend on how its partials were grouped. Folding left to right
(``((p0 + p1) + p2) + ...``) fixes the grouping for one run but not for shards: shard 1
would need shard 0's partial to start from. Instead the partials of windows ``0 .. n-1``
(their plan indices) are merged in a binary tree fixed by the indices alone: the node of
level ``l`` and number ``k`` is the merge of its two children, and covers windows
``k * 2**l`` up to ``(k + 1) * 2**l``. A run in plan order keeps only the nodes not yet
merged into a parent (at most one per level: memory is ``log2(n)`` partials); a shard
keeps the nodes that lie within its windows, and merging shards completes the same tree
with the same merges. The nodes left at the end (the binary digits of ``n``) are merged
left to right. So a result is the same bits whatever the mode, ``-j``, the shards and a
resume, and the tree's pairwise merges round less than a long left fold.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# A node: (first window, level, partial), covering windows first .. first + 2**level - 1.
Node = tuple[int, int, Any]


class PlanFold:
    """Partials of windows, given in plan order, merged by the fixed tree (see the module).

    Parameters
    ----------
    merge : callable
        ``merge(first, second) -> partial``: the reduction's merge.
    nodes : iterable of Node
        The nodes of the windows merged so far (what `nodes` gave, e.g. from a journal).
    """

    def __init__(self, merge: Any, nodes: Iterable[Node] = ()) -> None:
        self._merge = merge
        self._nodes: list[Node] = []
        for node in nodes:
            self.add_node(node)

    @property
    def nodes(self) -> list[Node]:
        """The nodes not merged into a parent yet, in plan order (a copy: journal it)."""
        return list(self._nodes)

    def add(self, index: int, partial: Any) -> None:
        """The partial of window ``index``: the next window after those added so far."""
        self.add_node((index, 0, partial))

    def add_node(self, node: Node) -> None:
        """A node of the tree (a window's or a shard's), next in plan order.

        Raises
        ------
        ValueError
            If ``node`` does not start where the nodes so far end (a bug, not bad input).
        """
        first = node[0]
        if self._nodes:
            last_first, last_level, _ = self._nodes[-1]
            if last_first + (1 << last_level) != first:
                raise ValueError(f"node at window {first} does not follow window {last_first}")
        self._nodes.append(node)
        # Merge siblings as soon as both are in: a left child (even number at its level)
        # followed by the right one of the same level.
        while len(self._nodes) >= 2:
            (a_first, a_level, a), (_, b_level, b) = self._nodes[-2:]
            if a_level != b_level or (a_first >> a_level) % 2:
                break
            self._nodes[-2:] = [(a_first, a_level + 1, self._merge(a, b))]

    @property
    def windows(self) -> int:
        """How many windows the nodes cover."""
        return sum(1 << level for _, level, _ in self._nodes)

    def result(self, start: Any) -> Any:
        """The partial of every window added: the nodes left merged left to right;
        ``start`` (the partial of no window) if none was."""
        if not self._nodes:
            return start
        partial = self._nodes[0][2]
        for _, _, other in self._nodes[1:]:
            partial = self._merge(partial, other)
        return partial
