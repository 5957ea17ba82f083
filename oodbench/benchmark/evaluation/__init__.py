"""Evaluation: the representation cache (:mod:`.features`), metrics (:mod:`.metrics`), the run loop
(:mod:`.runner`), the results table (:mod:`.results`), tuning on OOD validation data (:mod:`.tuning`)
and cross-library agreement (:mod:`.agreement`)."""
