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
    const width = 30;
    const frac = total > 0 ? Math.min(1, done / total) : 0;
    const filled = Math.round(frac * width);
    const secs = (now - this.started) / 1000;
    const eta = frac > 0 ? secs / frac - secs : 0;
    this.stream.write(
      `\r${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${secs.toFixed(1)}s` +
        (done < total ? ` eta ${eta.toFixed(0)}s ` : '      '),
    );
  }

  finish(): void {
    if (this.enabled) this.stream.write('\n');
  }
}

/** One bar per label (a stage, a text, a task), each closed when it completes; quiet off a terminal. */
export function progressByLabel(o: { quiet?: boolean; width?: number } = {}): (label: string, p: ProgressEvent) => void {
  const bars = new Map<string, ProgressBar>();
  return (label, p) => {
    let bar = bars.get(label);
    if (!bar) bars.set(label, (bar = new ProgressBar(label.slice(0, o.width ?? 40).padEnd(o.width ?? 40), { quiet: o.quiet })));
    bar.update(p);
    if (p.done === p.total) bar.finish();
  };
}
