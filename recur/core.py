"""Compatibility module: what `recur.core` held before the split by concern.

The interface and shared fields now live in `recur.config`, the embeddings and
heads in `recur.embed`, the H/L recursion in `recur.recursion`; new code should
import from those. Every name that `recur.core` exported is still here.
"""
from recur.config import (GRAD_MODES, HALT_RULES, POS_ENCODINGS, InnerCarry,
                          LayerCalls, ModelConfig, SegmentOutput)
from recur.embed import embed_inputs, init_io, output_heads, rope_for, segment_inputs
from recur.recursion import recurse, remat_policy
from recur.recursion import repeat as _repeat

__all__ = ["ModelConfig", "InnerCarry", "SegmentOutput", "LayerCalls", "embed_inputs",
           "segment_inputs", "output_heads", "init_io", "recurse", "remat_policy",
           "rope_for", "POS_ENCODINGS", "GRAD_MODES", "HALT_RULES"]
