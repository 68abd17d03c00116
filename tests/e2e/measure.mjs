// The T-change measure shared by the end-to-end tests (app.test.mjs, relatives.test.mjs).

/** Sets the T slider to `v` and measures the main thread's work for the change, without the wait
 * for the display's next frame slot: the input's task with its effects (until a task queued behind
 * it runs), plus the frame's style, layout and paint (from the frame's animation callback to a task
 * behind it). Also returns the T of the feature maps at the frame's end and the charts' own
 * drawing times (their `data-drawn-ms`). */
export async function tChange(page, v) {
  return page.evaluate(async (v) => {
    const slider = document.querySelector('[data-testid="t-slider"]');
    const nextTask = () => new Promise((r) => { const ch = new MessageChannel(); ch.port1.onmessage = () => r(performance.now()); ch.port2.postMessage(0); });
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
    const t0 = performance.now();
    const handled = nextTask();
    slider.value = v;
    slider.dispatchEvent(new Event('input', { bubbles: true }));
    const t1 = await handled;
    const r0 = await new Promise((r) => requestAnimationFrame(() => r(performance.now())));
    const r1 = await nextTask();
    // The feature maps at the new T, made on the page from the term maps the worker sent.
    const mapsT = document.querySelector('canvas.plot-maps')?.dataset.t;
    const charts_ms = ['spectrum', 'error', 'cost', 'filters', 'maps']
      .map((c) => Number(document.querySelector(`canvas.plot-${c}`).dataset.drawnMs))
      .reduce((a, b) => a + b, 0);
    return { frame_ms: r0 - t0, charts_ms, work_ms: t1 - t0 + (r1 - r0), mapsT };
  }, String(v));
}
