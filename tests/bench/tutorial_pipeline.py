#!/usr/bin/python3
"""The ZeroMQ guide's Python divide-and-conquer pipeline, for scripts/bench.

taskvent.py, taskwork.py and tasksink.py from the guide in one file, with
their sleeps (and the "press Enter" and the sink's start signal) removed:

  tutorial_pipeline.py vent ENDPOINT FILE [WORKERS]    PUSH binds, line = task
  tutorial_pipeline.py work IN OUT                     PULL, upper(), PUSH
  tutorial_pipeline.py sink ENDPOINT OUTPUT [WORKERS]  PULL binds, a line each

Each message is one frame. Instead of "press Enter when the workers are
ready", the ventilator waits until WORKERS peers completed the handshake,
and it ends with one empty frame per worker (the end marker). Workers pass
it on and, as in the guide, run until killed; the sink exits when it has
one per worker. Not a test: scripts/bench times it.
"""
import sys

import zmq
from zmq.utils.monitor import recv_monitor_message


def vent(endpoint, path, workers=1):
    context = zmq.Context()
    sender = context.socket(zmq.PUSH)
    sender.bind(endpoint)
    if workers > 1:
        monitor = sender.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        for _ in range(workers):
            recv_monitor_message(monitor)
        sender.disable_monitor()
        monitor.close()
    with open(path, 'rb') as tasks:
        for line in tasks:
            line = line.rstrip(b'\n')
            if line:
                sender.send(line)
    for _ in range(workers):
        sender.send(b'')
    sender.close()
    context.term()


def work(inp, out):
    context = zmq.Context()
    receiver = context.socket(zmq.PULL)
    receiver.connect(inp)
    sender = context.socket(zmq.PUSH)
    sender.connect(out)
    while True:
        sender.send(receiver.recv().upper())


def sink(endpoint, path, workers=1):
    context = zmq.Context()
    receiver = context.socket(zmq.PULL)
    receiver.bind(endpoint)
    ends = 0
    with open(path, 'wb') as out:
        while ends < workers:
            s = receiver.recv()
            if s:
                out.write(s + b'\n')
            else:
                ends += 1
    receiver.close()
    context.term()


def main(argv):
    if len(argv) >= 3 and argv[1] == 'work':
        work(argv[2], argv[3])
    elif len(argv) >= 4 and argv[1] in ('vent', 'sink'):
        n = int(argv[4]) if len(argv) > 4 else 1
        (vent if argv[1] == 'vent' else sink)(argv[2], argv[3], n)
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
