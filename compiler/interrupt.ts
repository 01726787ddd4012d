/**
 * Ctrl-C and SIGTERM: abort the running job (execa kills the child through
 * the signal) and let `finally` blocks remove temporary directories. A build
 * or publish cut short this way fails with exit 1; `watch` and `serve` treat
 * the signal as their normal end (exit 0). A second signal exits at once.
 */
const controller = new AbortController();
let installed = false;

export function interruptSignal(): AbortSignal {
  if (!installed) {
    installed = true;
    const onSignal = (sig: NodeJS.Signals) => {
      if (controller.signal.aborted) process.exit(1);
      process.stderr.write(`\ntreecast: ${sig} received, stopping and cleaning up (again to force)\n`);
      controller.abort(new Error(`interrupted by ${sig}`));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  return controller.signal;
}
