"""Code faults: failure flags that applications evaluate in-process through ``scep_flags``."""
