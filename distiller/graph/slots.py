"""Channel slots: the union-find over channels that must be removed together.

Every channel that a layer creates (a filter's output, a model input channel, ...) is a *slot*, an int.
Tensors are followed through the graph as *label tensors*: int64 tensors of the activation's shape whose
elements hold the slot of the channel the element belongs to (-1: no channel identity, e.g. a constant).
Operations that tie channels together (a residual addition, the same layer called twice) *unite* slots;
a slot that cannot be removed (it reaches the model output, an unknown operation, ...) is *blocked*, with
the reason naming the blocking node. The set of slots with one root is one removable channel.
"""
import torch

__all__ = ["SlotUnion", "squeeze_constant_dims", "channel_profile"]


class SlotUnion:
    """Union-find over channel slots, with the first blocking reason of every blocked slot."""

    def __init__(self):
        self.parent = []
        self.blocked = {}

    def __len__(self):
        return len(self.parent)

    def new(self, count):
        """Allocates ``count`` fresh slots; returns them as an int64 tensor."""
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        return torch.arange(start, start + count, dtype=torch.long)

    def find(self, slot):
        parent = self.parent
        while parent[slot] != slot:
            parent[slot] = parent[parent[slot]]
            slot = parent[slot]
        return slot

    def union(self, a, b):
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)

    def union_tensors(self, a, b):
        """Unites ``a[i]`` with ``b[i]`` for every position where both are slots (>= 0)."""
        a, b = squeeze_constant_dims(a, b)
        both = (a >= 0) & (b >= 0)
        if not both.any():
            return
        keys = torch.unique(a[both] * (len(self.parent) + 1) + b[both])
        for key in keys.tolist():
            self.union(*divmod(key, len(self.parent) + 1))

    def block(self, labels, reason):
        """Blocks every slot found in ``labels`` (first reason wins)."""
        for slot in torch.unique(squeeze_constant_dims(labels)).tolist():
            if slot >= 0:
                self.blocked.setdefault(slot, reason)

    def canonical(self, labels):
        """``labels`` with every slot replaced by its root (the tensor's distinct slots only are looked up)."""
        small = squeeze_constant_dims(labels)
        unique, inverse = torch.unique(small, return_inverse=True)
        roots = torch.tensor([self.find(s) if s >= 0 else -1 for s in unique.tolist()], dtype=torch.long)
        return roots[inverse].expand(labels.shape)

    def roots_table(self):
        """Tensor ``t`` with ``t[slot]`` = root of ``slot``, and ``t[-1] = -1`` so neutral labels map to -1."""
        return torch.tensor([self.find(s) for s in range(len(self.parent))] + [-1], dtype=torch.long)

    def blocked_roots(self):
        """root -> reason, for every root with a blocked member."""
        out = {}
        for slot, reason in self.blocked.items():
            out.setdefault(self.find(slot), reason)
        return out


def squeeze_constant_dims(*tensors):
    """Broadcasts ``tensors`` and narrows to length 1 every dim along which all of them are constant.

    The result holds the same (element-aligned) combinations of values with far fewer elements, e.g. a
    ``[1, C, H, W]`` label tensor whose labels depend only on the channel becomes ``[1, C, 1, 1]``.
    Expanded (stride 0) dims are narrowed for free; the others are compared. For one tensor the narrowed
    form is unique, so two tensors are equal iff their shapes and narrowed forms are.
    """
    tensors = torch.broadcast_tensors(*tensors)
    dims = sorted(range(tensors[0].dim()), key=lambda d: any(t.stride(d) != 0 for t in tensors))
    for dim in dims:
        if tensors[0].shape[dim] > 1 and all(t.stride(dim) == 0 or bool((t == t.narrow(dim, 0, 1)).all())
                                             for t in tensors):
            tensors = tuple(t.narrow(dim, 0, 1) for t in tensors)
    return tensors if len(tensors) > 1 else tensors[0]


def channel_profile(labels, dim):
    """The labels along ``dim`` when they do not vary along any other dim, else None.

    Returns:
        int64 tensor of length ``labels.shape[dim]``, or None.
    """
    dim = dim % labels.dim()
    small = squeeze_constant_dims(labels)
    if any(size > 1 for d, size in enumerate(small.shape) if d != dim):
        return None
    return small.reshape(-1).expand(labels.shape[dim]).clone()
