"""The numpy task library: model pre/post-processing, masks, tracking, overlay, results.

Imports only ``segstream.stream``; never torch, never the applications."""
