"""The batch supervisor: ISA-88 batch state machine, step executor, interlocks and alarms."""
