"""HTTP layer: dependencies (:mod:`.deps`) and one router per resource (:mod:`.routes`)."""
