"""Crash-recovery fuzzing of the storage engine (issue 3; RELIABILITY.md "How we test").

Modules, by purpose:

- ``model``: the oracle. What was issued to each log, what was acknowledged, what is durable,
  and the check of a recovered store against it.
- ``simdisk``: a SimIO that can snapshot itself at any IO call (mid-operation crash points),
  chooser helpers, and a hash of a post-crash disk image.
- ``harness``: runs operations against a real ``Store`` over SimIO, keeps the model in step,
  crashes, reopens and checks. Every driver below goes through it.
- ``workload``: the random workload runner behind ``python -m fuzz run``.
- ``exhaustive``: every crash point and every kept/dropped subset of pending operations for
  every workload of up to three operations from a small alphabet.
- ``ioerrors``: fail the Nth IO call, N = 1, 2, ... (one-shot and persistent).
- ``canaries``: planted bugs (runtime monkeypatches) the fuzzer must catch.
- ``realproc`` / ``writer``: a real writer process on RealIO, SIGKILLed at random moments.
- ``regressions``: seeds that once failed; the tests replay them.
"""
