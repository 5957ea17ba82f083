"""Tools around the harness: the detector contract check and baseline comparison (:mod:`.check`),
ease-of-use and code-quality measurements (:mod:`.ease`, :mod:`.quality`), the separable toy problem they
run detectors on (:mod:`.separable`) and the guards that refuse ``.cuda()`` and network access while they
do (:mod:`.guards`)."""
