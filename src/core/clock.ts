/**
 * Time as an input. Everything that reads the time or waits for it takes a
 * Clock, so tests advance a fake clock instead of sleeping.
 */

/** A handle returned by {@link Clock.setTimer}. */
export interface TimerHandle {
  cancel(): void;
}

/** The current time and one-shot timers. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `fn` once after `ms` milliseconds of this clock's time. */
  setTimer(ms: number, fn: () => void): TimerHandle;
}

/** setTimeout's longest wait (2^31-1 ms). */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** A pending setTimeout: one object, its method on the prototype (a manager holds one per parked long poll). */
class TimeoutHandle implements TimerHandle {
  constructor(private readonly handle: NodeJS.Timeout) {}
  cancel(): void {
    clearTimeout(this.handle);
  }
}

/** The real clock: Date.now and setTimeout (unref'd only if asked). */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(ms, fn) {
    if (ms <= MAX_TIMEOUT_MS) return new TimeoutHandle(setTimeout(fn, Math.max(0, ms)));
    // setTimeout caps at 2^31-1 ms; longer waits re-arm in steps.
    let handle: NodeJS.Timeout;
    const due = Date.now() + Math.max(0, ms);
    const arm = (): void => {
      const left = due - Date.now();
      handle = setTimeout(left > MAX_TIMEOUT_MS ? arm : fn, Math.min(Math.max(0, left), MAX_TIMEOUT_MS));
    };
    arm();
    return { cancel: () => clearTimeout(handle) };
  },
};

interface PendingTimer {
  due: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/** A clock that moves only when told to; timers fire in due order. */
export class FakeClock implements Clock {
  private current: number;
  private seq = 0;
  private timers: PendingTimer[] = [];

  constructor(start: number | Date = Date.UTC(2026, 0, 1)) {
    this.current = typeof start === 'number' ? start : start.getTime();
  }

  now(): number {
    return this.current;
  }

  setTimer(ms: number, fn: () => void): TimerHandle {
    const timer: PendingTimer = { due: this.current + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    this.timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }

  /** Timers still waiting to fire. */
  pending(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }

  /** When the next timer is due, or undefined. */
  nextDue(): number | undefined {
    const live = this.timers.filter((t) => !t.cancelled);
    return live.length === 0 ? undefined : Math.min(...live.map((t) => t.due));
  }

  /** Sets the time without firing timers (a clock jump). */
  set(time: number | Date): void {
    this.current = typeof time === 'number' ? time : time.getTime();
  }

  /** Moves time forward by `ms`, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const target = this.current + ms;
    for (;;) {
      this.timers = this.timers.filter((t) => !t.cancelled);
      const next = this.timers.filter((t) => t.due <= target).sort((a, b) => a.due - b.due || a.seq - b.seq)[0];
      if (next === undefined) break;
      this.timers = this.timers.filter((t) => t !== next);
      this.current = Math.max(this.current, next.due);
      next.fn();
    }
    this.current = target;
  }
}
