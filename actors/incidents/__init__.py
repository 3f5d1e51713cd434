"""Incidents: turning per-window distress scores into a few explainable incidents, as events.

One job per module:

- ``engine`` - ``IncidentEngine``, the rules (debounce, merge, quiet period, cooldown, severity, evidence clip;
  its docstring states them) over the score, transcript, audio and incident events of many streams.
- ``state`` - what the engine remembers per stream (windows, the stream's clock, the incident it tracks).
- ``evidence`` - what one incident has gathered, and the severity and words it supports.
- ``audio_buffer`` - the recent audio of one stream, from which evidence clips are cut.
- ``stage`` - the incident actor: the engine as a pipeline stage, its state rebuilt from the incidents topic.
"""
