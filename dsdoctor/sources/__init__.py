"""Where evidence comes from after the fact: text logs (scanner, recognisers in formats/,
registry), dsdoctor's own event files and the artifacts a run leaves (TensorBoard, CSV monitor,
HF trainer_state, Flight Recorder dumps). Live mode, the other front door, is dsdoctor/live/."""
