"""The table a psa-finn HW layer embeds (PerChannelLUT, KANLinear): input 1 of its node, an initializer."""


def embedded_table(node, model, what="table"):
    """The `what` (input 1) of `node` in `model`: an initializer, else a ValueError naming the node and the fix."""
    table = model.get_initializer(node.input[1])
    if table is None:
        raise ValueError(f"{node.name}: the {what} input {node.input[1]} is not an initializer; the hardware layer "
                         f"embeds the {what}, so fold constants (qonnx FoldConstants) first")
    return table
