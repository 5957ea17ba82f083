"""Tools around the harness: the detector contract check (:mod:`.check`), ease-of-use and code-quality
measurements (:mod:`.ease`, :mod:`.quality`) and the separable toy problem (:mod:`.separable`)."""
