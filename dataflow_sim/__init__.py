"""Cycle simulation of a finn-plus dataflow design from per-layer stream behaviour models, and FIFO sizing by it.

stream_models (one model per HW layer kind, STREAM_MODELS) -> layer_timing (a layer's chains of events) ->
dataflow_graph (a model's layers joined by its streams) -> event_engine (earliest / latest schedules) ->
fifo_sizing (depths from the latest schedule); fifo_table: the StreamingFIFO nodes of a model with FINN's own
resource estimates. Imports neither torch nor psa_finn.models.
"""
