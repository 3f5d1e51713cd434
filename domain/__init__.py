"""The product's vocabulary, defined once: what every layer above (events, models, actors, projections, frontend)
agrees on about audio and incidents."""
