// A one-line progress bar on stderr, shown only on a terminal and never with --json output.
export interface ProgressEvent {
  done: number;
  total: number;
}

export class ProgressBar {
  private readonly enabled: boolean;
  private readonly started = Date.now();
  private lastDraw = 0;

  constructor(
    private readonly label: string,
    options: { quiet?: boolean; stream?: NodeJS.WriteStream } = {},
  ) {
    this.stream = options.stream ?? process.stderr;
    this.enabled = !options.quiet && Boolean(this.stream.isTTY);
  }
  private readonly stream: NodeJS.WriteStream;

  update({ done, total }: ProgressEvent): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (done < total && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    this.stream.write(`\r${progressLine(this.label, done, total, (now - this.started) / 1000, this.stream.columns)}\x1b[K`);
    this.drawn = true;
  }

  finish(): void {
    if (this.enabled && this.drawn) this.stream.write('\n');
    this.drawn = false;
  }

  private drawn = false;
}

/**
 * One progress line that fits `columns` (less one, so the terminal never wraps it): the bar shrinks first
 * (30 characters down to 10), then the label is cut. The caller clears what a longer earlier line left
 * (ESC [K), so nothing of it remains after the counts.
 */
export function progressLine(label: string, done: number, total: number, secs: number, columns = 80): string {
  const width = Math.max(20, columns - 1);
  const frac = total > 0 ? Math.min(1, done / total) : 0;
  const eta = frac > 0 ? secs / frac - secs : 0;
  const counts = ` ${done}/${total} ${secs.toFixed(1)}s${done < total ? ` eta ${eta.toFixed(0)}s` : ''}`;
  let name = label.trimEnd();
  let bar = Math.min(30, width - name.length - counts.length - 3);
  if (bar < 10) {
    bar = 10;
    const room = Math.max(1, width - counts.length - 3 - bar);
    if (name.length > room) name = room > 1 ? `${name.slice(0, room - 1)}…` : name.slice(0, room);
  }
  const filled = Math.round(frac * bar);
  return `${name} [${'#'.repeat(filled)}${'.'.repeat(bar - filled)}]${counts}`.slice(0, width);
}

/** One bar per label (a stage, a text, a task), each closed when it completes; quiet off a terminal. */
export function progressByLabel(o: { quiet?: boolean; width?: number } = {}): (label: string, p: ProgressEvent) => void {
  const bars = new Map<string, ProgressBar>();
  return (label, p) => {
    let bar = bars.get(label);
    if (!bar) bars.set(label, (bar = new ProgressBar(label, { quiet: o.quiet })));
    bar.update(p);
    if (p.done === p.total) bar.finish();
  };
}
