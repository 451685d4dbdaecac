"""engine.model: the BIKE model itself: its config and towers, the attribute, temporal and spotting branches
(``bike.py`` the forward pass step by step), loading and checking weights, label sets, losses and metrics, and
``model.BikeModel`` that classifies a video. Importing this package imports nothing: ``engine.model.labels``
or ``engine.model.config`` stay free of torch."""
