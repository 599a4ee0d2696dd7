"""The two sides of the job as plans on open datasets: :mod:`.onboard` (``OnboardPlan``,
``write_lr``) and :mod:`.ground` (``GroundPlan``, ``write_hr``). A plan is decided once per scene
and makes any tile anywhere (it is picklable), so a scene can be split over workers; the writers
are the only code that writes the LR and HR GeoTIFFs.

(A package rather than top-level ``onboard.py`` / ``ground.py``: those module names would shadow
the functions ``georefscale.onboard`` and ``georefscale.ground``.)
"""
