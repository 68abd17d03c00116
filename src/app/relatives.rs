//! Network decoupling among its relatives (issue 5): the equal-cost comparison table, the Pareto
//! plot and the family view, computed by a pool of Web Workers that run only comparisons.
//!
//! [`ComparePool`] (pure, in ndlab-lab) says which unit goes to which worker and merges their partial
//! reports; this host executes its actions. A Web Worker cannot read messages while it computes, so
//! cancelling (or a newer request, which wins) terminates the pool's workers and starts fresh ones,
//! each given the latest layer and image requests the page sent to the main worker
//! ([`Pool::mirror`]) before its first unit; answers of an earlier comparison are dropped.

use super::canvas::{download_svg, to_svg};
use super::client::WorkerClient;
use super::hooks::now_ms;
use super::{plots, Ctx};
use leptos::html;
use leptos::prelude::*;
use ndlab_charts::{draw_pareto, ParetoData};
use ndlab_core::relatives::session::{CompareReport, CompareRequest, MethodRow};
use ndlab_core::relatives::{Dims, Method};
use ndlab_lab::compare_pool::{pool_size, CompareAction, ComparePool};
use ndlab_lab::protocol::{RequestBody, Response};
use ndlab_lab::state::{parse_speedup, SPEEDUP_RANGE};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// Where a comparison stands.
#[derive(Debug, Clone, PartialEq)]
enum Status {
    Idle,
    Running(String, f64),
    Done,
    Cancelled,
    Failed(String),
}

impl Status {
    fn key(&self) -> &'static str {
        match self {
            Status::Idle => "idle",
            Status::Running(..) => "running",
            Status::Done => "done",
            Status::Cancelled => "cancelled",
            Status::Failed(_) => "error",
        }
    }
}

/// The section's signals.
#[derive(Clone, Copy)]
struct Rel {
    rows: RwSignal<Vec<MethodRow>>,
    report: RwSignal<Option<CompareReport>>,
    status: RwSignal<Status>,
    /// Wall time of the whole comparison in the page (ms), when done.
    elapsed: RwSignal<Option<f64>>,
    /// Wall time until the table had all its rows (ms).
    rows_ms: RwSignal<Option<f64>>,
    /// Workers of the running (or last) comparison.
    workers: RwSignal<usize>,
}

/// The comparison workers and what they have been given.
pub(crate) struct Pool {
    clients: Vec<WorkerClient>,
    /// The comparison's state machine ([`ComparePool`]), which says what to post and what to show.
    machine: Option<ComparePool>,
    /// Bumped by every start and cancel: answers of workers of an earlier comparison are dropped.
    generation: u64,
    started_ms: f64,
    /// Latest layer and image requests sent to the main worker (the layer request is a
    /// `LoadExample` or a `LoadFileLayer`; the latter needs `file` first).
    example: Option<RequestBody>,
    /// The user's model file: its `OpenFile` request and the `File` itself.
    file: Option<(RequestBody, JsValue)>,
    image: Option<RequestBody>,
    sink: Option<Rel>,
}

impl Pool {
    pub(crate) fn new() -> Self {
        Pool {
            clients: Vec::new(),
            machine: None,
            generation: 0,
            started_ms: 0.0,
            example: None,
            file: None,
            image: None,
            sink: None,
        }
    }

    /// Remembers the layer and image requests the page sends to the main worker, so the
    /// comparison workers work on the same layer and input.
    pub(crate) fn mirror(&mut self, body: &RequestBody, attachment: Option<&JsValue>) {
        match body {
            RequestBody::LoadExample { .. }
            | RequestBody::LoadFileLayer { .. }
            | RequestBody::LoadLayerData(_) => self.example = Some(body.clone()),
            RequestBody::OpenFile { .. } => {
                if let Some(file) = attachment {
                    self.file = Some((body.clone(), file.clone()));
                }
            }
            RequestBody::LoadImage { .. } | RequestBody::LoadBuiltinImage { .. } => {
                self.image = Some(body.clone())
            }
            _ => {}
        }
    }

    fn stop_workers(&mut self) {
        self.generation += 1;
        self.machine = None;
        for c in self.clients.drain(..) {
            c.terminate();
        }
    }
}

/// Executes the state machine's actions.
fn execute(ctx: Ctx, actions: Vec<CompareAction>) {
    let Some(rel) = ctx.pool.with_value(|p| p.sink) else { return };
    for a in actions {
        match a {
            CompareAction::Send { worker, req } => ctx.pool.update_value(|p| {
                if let Some(id) = p.clients.get(worker).map(|c| c.send(RequestBody::Compare(req))) {
                    if let Some(m) = p.machine.as_mut() {
                        m.sent(worker, id);
                    }
                }
            }),
            CompareAction::Rows(rows) => {
                if rows.len() == Method::ALL.len() {
                    let started = ctx.pool.with_value(|p| p.started_ms);
                    rel.rows_ms.set(Some(now_ms() - started));
                }
                rel.rows.set(rows);
            }
            CompareAction::Progress(stage, fraction) => rel.status.set(Status::Running(stage, fraction)),
            CompareAction::Partial(report) => rel.report.set(Some(*report)),
            CompareAction::Done(report) => {
                let started = ctx.pool.with_value(|p| p.started_ms);
                rel.rows.set(report.rows.clone());
                rel.report.set(Some(*report));
                rel.elapsed.set(Some(now_ms() - started));
                rel.status.set(Status::Done);
                // The workers hold a layer each: let them go.
                ctx.pool.update_value(Pool::stop_workers);
            }
            CompareAction::Failed(message) => {
                rel.status.set(Status::Failed(message));
                ctx.pool.update_value(Pool::stop_workers);
            }
        }
    }
}

/// Applies one answer of comparison worker `worker` of comparison `generation`.
fn on_response(ctx: Ctx, generation: u64, worker: usize, resp: Response) {
    let actions = ctx.pool.try_update_value(|p| match p.machine.as_mut() {
        Some(m) if p.generation == generation => m.on_response(worker, resp),
        _ => Vec::new(),
    });
    execute(ctx, actions.unwrap_or_default());
}

/// Starts a comparison at `speedup` over a pool of fresh workers (newest wins: the previous
/// comparison's workers are stopped). A Web Worker cannot read messages while it computes, so a
/// newer comparison terminates the running one's workers and starts others, each given the latest
/// layer and image first; [`ComparePool`] then hands out the comparison's units.
fn start(ctx: Ctx, rel: Rel, speedup: f64) {
    ctx.pool.update_value(Pool::stop_workers);
    rel.rows.set(Vec::new());
    rel.report.set(None);
    rel.elapsed.set(None);
    rel.rows_ms.set(None);
    let Some(d) =
        ctx.layer.with_untracked(|l| l.as_ref().map(|l| Dims { n: l.n, c: l.c, kh: l.kh, kw: l.kw }))
    else {
        return rel.status.set(Status::Failed("no layer loaded".into()));
    };
    let req = CompareRequest { speedup, ..CompareRequest::default() };
    let wanted = web_sys::window().map_or(1.0, |w| w.navigator().hardware_concurrency());
    let (machine, first) = match ComparePool::start(req, d, pool_size(wanted)) {
        Ok(m) => m,
        Err(e) => return rel.status.set(Status::Failed(e.to_string())),
    };
    let generation = ctx.pool.with_value(|p| p.generation);
    let mut clients = Vec::new();
    for w in 0..machine.workers() {
        match WorkerClient::start(move |r| on_response(ctx, generation, w, r)) {
            Ok(c) => clients.push(c),
            Err(e) => {
                clients.iter().for_each(WorkerClient::terminate);
                return rel.status.set(Status::Failed(e));
            }
        }
    }
    rel.workers.set(clients.len());
    rel.status.set(Status::Running(format!("starting {} comparison workers", clients.len()), 0.0));
    ctx.pool.update_value(|p| {
        p.sink = Some(rel);
        p.started_ms = now_ms();
        for client in &clients {
            // A file layer needs its file opened first (the worker keeps the File, not a copy).
            if let (Some(RequestBody::LoadFileLayer { .. }), Some((open, file))) =
                (&p.example, p.file.clone())
            {
                client.send_with(open, Some(file));
            }
            for body in [p.example.clone(), p.image.clone()].into_iter().flatten() {
                client.send(body);
            }
        }
        p.clients = clients;
        p.machine = Some(machine);
    });
    execute(ctx, first);
}

/// Stops the running comparison.
fn cancel(ctx: Ctx, rel: Rel) {
    ctx.pool.update_value(Pool::stop_workers);
    rel.status.set(Status::Cancelled);
}

/// The section: budget control, table, Pareto plot, family view.
#[component]
pub fn RelativesSection() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let rel = Rel {
        rows: RwSignal::new(Vec::new()),
        report: RwSignal::new(None),
        status: RwSignal::new(Status::Idle),
        elapsed: RwSignal::new(None),
        rows_ms: RwSignal::new(None),
        workers: RwSignal::new(0),
    };
    let layer_key = Memo::new(move |_| ctx.layer.with(|l| l.as_ref().map(|l| l.example.clone())));
    let input_key =
        Memo::new(move |_| ctx.input.with(|i| i.as_ref().map(|i| (i.c, i.h, i.w, i.description.clone()))));
    let speedup = Memo::new(move |_| ctx.state.with(|s| s.speedup));
    // Started once the main view has its output-error curve and its forward result with settled
    // timings, so that it competes neither with the first plots nor with the re-timing of the
    // layers (which would then measure this worker's load).
    // (The curves are cleared when the layer or input changes, which restarts it anyway.)
    // Latched per layer and input: a T change unsettles the forward result again (the worker
    // times the decoupled layer at the new T), which must not restart the comparison.
    let ready_for = RwSignal::new(None);
    Effect::new(move |_| {
        let settled = ctx.fwd.with(|f| f.as_ref().is_some_and(|f| f.timings.settled));
        if settled && ctx.curves.with(|c| !c.is_empty()) {
            let key = (layer_key.get_untracked(), input_key.get_untracked());
            if ready_for.with_untracked(|r| r.as_ref() != Some(&key)) {
                ready_for.set(Some(key));
            }
        }
    });
    let main_ready =
        Memo::new(move |_| ready_for.with(|r| r.as_ref() == Some(&(layer_key.get(), input_key.get()))));
    // Started only once the section is on screen (or near it): the comparison takes one core for
    // minutes on a large layer, and a visitor who stays with the plots above (a lecturer moving
    // the slider) should not share the machine with it. Once started for a layer, input and
    // budget, it runs to the end wherever the page is scrolled.
    let section = NodeRef::<leptos::html::Section>::new();
    let on_screen = RwSignal::new(false);
    Effect::new(move |_| {
        if let Some(el) = section.get() {
            observe_on_screen(&el, move |seen| on_screen.set(seen));
        }
    });
    let waiting_for_view = Memo::new(move |_| main_ready.get() && !on_screen.get());
    let started_for = StoredValue::new(None);
    Effect::new(move |_| {
        // Newest wins: any change of layer, input or budget restarts the comparison.
        let (l, i, x) = (layer_key.get(), input_key.get(), speedup.get());
        if l.is_some() && i.is_some() && main_ready.get() && on_screen.get() {
            let key = (l, i, x.to_bits());
            if started_for.with_value(|s| s.as_ref() != Some(&key)) {
                started_for.set_value(Some(key));
                start(ctx, rel, x);
            }
        }
    });
    let dims = move || ctx.layer.with(|l| l.as_ref().map(|l| Dims { n: l.n, c: l.c, kh: l.kh, kw: l.kw }));
    let grouped = move || ctx.layer.with(|l| l.as_ref().is_some_and(|l| l.geometry.groups != 1));
    let budget_text = move || {
        let x = speedup.get();
        let Some(d) = dims() else { return String::new() };
        let b = (d.regular_macs() as f64 / x).floor() as u64;
        let size = ctx.input.with(|i| i.as_ref().map(|i| (i.h, i.w)));
        let total = rel.report.with(|r| r.as_ref().and_then(|r| r.output_hw)).or(size);
        match total {
            Some((h, w)) => format!(
                "budget {b} MACs per output pixel (regular {} / {x}); on this {h}×{w} output: {:.1} M MACs against {:.1} M",
                d.regular_macs(),
                (b as f64 * (h * w) as f64) / 1e6,
                (d.regular_macs() as f64 * (h * w) as f64) / 1e6
            ),
            None => format!("budget {b} MACs per output pixel (regular {} / {x})", d.regular_macs()),
        }
    };
    let on_speedup = move |ev: leptos::ev::Event| {
        if let Some(x) = parse_speedup(&event_target_value(&ev)) {
            ctx.control(ndlab_lab::page::Control::Speedup(x));
        }
    };
    let restart = move |_| {
        let x = ctx.state.with_untracked(|s| s.speedup);
        // Started by hand: coming on screen later does not start it again.
        started_for.set_value(Some((layer_key.get_untracked(), input_key.get_untracked(), x.to_bits())));
        start(ctx, rel, x);
    };
    let running = move || matches!(rel.status.get(), Status::Running(..));
    view! {
        <section node_ref=section class="relatives" data-testid="relatives" aria-label="decoupling among its relatives">
            <h2>"Decoupling among its relatives, at equal cost"</h2>
            <p class="blurb">"Channel (CD) and spatial (SD) decompositions, four-factor CP, MobileNet-style CP and Tucker-2 of the same layer, each at its largest rank whose MACs fit the budget; errors on the weights and on this image's real activations, through each method's own layers. CP and Tucker-2 are iterative (ALS, HOOI; at most 200 sweeps, stopped when the error stalls). The methods run side by side in workers of their own, one per core (at most 4): cancel stops them."</p>
            <div class="rel-controls">
                <label>"Speed-up X "
                    <input type="number" data-testid="speedup-input" min=SPEEDUP_RANGE.0 max=SPEEDUP_RANGE.1 step="0.05"
                        prop:value=move || speedup.get().to_string() on:change=on_speedup/>
                </label>
                <span class="budget" data-testid="budget">{budget_text}</span>
                <button data-testid="compare-cancel" disabled=move || !running() on:click=move |_| cancel(ctx, rel)>"cancel"</button>
                <button data-testid="compare-run" disabled=running on:click=restart>
                    {move || if rel.status.with(|s| *s == Status::Idle) { "run" } else { "run again" }}
                </button>
                <span class="status" data-testid="compare-status" data-state=move || rel.status.get().key()
                    data-rows-ms=move || rel.rows_ms.get().map(|t| format!("{t:.0}"))
                    data-done-ms=move || rel.elapsed.get().map(|t| format!("{t:.0}"))
                    data-workers=move || rel.workers.get().to_string()>
                    {move || status_text(&rel.status.get(), rel.elapsed.get(), rel.rows_ms.get(), rel.workers.get(), waiting_for_view.get())}
                </span>
            </div>
            <Show when=grouped>
                <p class="warn">"This layer is grouped: the relatives decompose ungrouped layers only."</p>
            </Show>
            <CompareTable rel=rel/>
            <ParetoCard rel=rel/>
            <Family/>
        </section>
    }
}

/// Calls `on_change(true)` when `el` comes within a quarter of the viewport's height below the
/// visible area (or into it), and `on_change(false)` when it leaves.
pub(crate) fn observe_on_screen(el: &web_sys::Element, on_change: impl Fn(bool) + 'static) {
    let on_change = std::rc::Rc::new(on_change);
    let call = on_change.clone();
    let callback = Closure::<dyn FnMut(js_sys::Array)>::new(move |entries: js_sys::Array| {
        let last = entries
            .iter()
            .filter_map(|e| e.dyn_into::<web_sys::IntersectionObserverEntry>().ok())
            .next_back();
        if let Some(entry) = last {
            call(entry.is_intersecting());
        }
    });
    let options = web_sys::IntersectionObserverInit::new();
    options.set_root_margin("0px 0px 25% 0px");
    match web_sys::IntersectionObserver::new_with_options(callback.as_ref().unchecked_ref(), &options) {
        Ok(observer) => {
            observer.observe(el);
            callback.forget();
        }
        // No IntersectionObserver (very old browsers): the section counts as on screen.
        Err(_) => on_change(true),
    }
}

fn status_text(
    s: &Status,
    elapsed: Option<f64>,
    rows_ms: Option<f64>,
    workers: usize,
    waiting_for_view: bool,
) -> String {
    match s {
        Status::Idle if waiting_for_view => "starts when this section is on screen (or press “run”)".into(),
        Status::Idle => "waiting for the layer and the image".into(),
        Status::Running(stage, f) => format!("{stage} ({:.0} %)", f * 100.0),
        Status::Done => {
            let table = rows_ms.map(|t| format!("table in {:.1} s, ", t / 1e3)).unwrap_or_default();
            let on = if workers == 1 { "1 worker".to_string() } else { format!("{workers} workers") };
            format!("done in {:.1} s ({table}{on})", elapsed.unwrap_or(0.0) / 1e3)
        }
        Status::Cancelled => "cancelled".into(),
        Status::Failed(m) => format!("failed: {m}"),
    }
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into())
}

#[component]
fn CompareTable(rel: Rel) -> impl IntoView {
    let rows = move || {
        rel.rows
            .get()
            .into_iter()
            .map(|r| {
                let rank = r.rank.map(|k| k.to_string()).unwrap_or_else(|| "–".into());
                let rank_attr = rank.clone();
                view! {
                    <tr data-method=r.method.clone() data-weight-error=format!("{:e}", r.weight_error)
                        data-output-error=r.output_error.map(|e| format!("{e:e}")).unwrap_or_default()
                        data-macs=r.macs.to_string() data-rank=rank_attr
                        data-decompose-ms=format!("{:.1}", r.decompose_ms) data-sweeps=r.sweeps.to_string()>
                        <td>{r.method.clone()}</td>
                        <td>{rank}</td>
                        <td class="num">{r.macs.to_string()}</td>
                        <td class="num">{r.params.to_string()}</td>
                        <td class="num">{format!("{:.4}", r.weight_error)}</td>
                        <td class="num">{r.output_error.map(|e| format!("{e:.4}")).unwrap_or_else(|| "–".into())}</td>
                        <td class="num">{format!("{:.1}", r.decompose_ms)}</td>
                        <td class="num">{fmt_ms(r.forward_ms)}</td>
                        <td class="note">{if r.sweeps > 0 { format!("{} sweeps, {}", r.sweeps, r.note) } else { r.note.clone() }}</td>
                    </tr>
                }
            })
            .collect_view()
    };
    let regular = move || {
        rel.report.with(|r| {
            r.as_ref().map(|r| {
                format!(
                    "Regular layer: {} MACs/pixel, forward {} ms. ",
                    r.regular_macs,
                    fmt_ms(r.regular_forward_ms)
                )
            })
        })
    };
    view! {
        <div class="table-wrap">
            <table class="compare" data-testid="compare-table">
                <thead><tr>
                    <th>"method"</th><th>"rank"</th><th>"MACs/pixel"</th><th>"params"</th>
                    <th>"weight error"</th><th>"output error"</th><th>"decompose (ms)"</th><th>"forward (ms)"</th><th>"notes"</th>
                </tr></thead>
                <tbody>{rows}</tbody>
            </table>
            <p class="blurb">{regular}"Times are measured in this browser (in the comparison's workers, while the others compute), one run each."</p>
        </div>
    }
}

fn pareto_data(r: &CompareReport) -> ParetoData {
    ParetoData {
        series: r
            .pareto
            .iter()
            .map(|s| (s.method.clone(), s.points.iter().map(|p| (p.macs as f64, p.error)).collect()))
            .collect(),
        budget: r.budget as f64,
        regular: r.regular_macs as f64,
        y_label: "relative weight error".into(),
    }
}

#[component]
fn ParetoCard(rel: Rel) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let canvas = NodeRef::<html::Canvas>::new();
    let drawn = RwSignal::new(false);
    Effect::new(move |_| {
        ctx.resize.track();
        let Some(el) = canvas.get() else { return };
        let data = rel.report.with(|r| r.as_ref().map(pareto_data));
        let Some(data) = data else {
            drawn.set(false);
            return;
        };
        let style = plots::style(ndlab_charts::ChartLayer::All);
        match ctx.canvases.with_value(|c| c.draw_on(&el, |area| draw_pareto(area, &data, &style))) {
            Ok(()) => drawn.set(true),
            Err(e) => ctx.control(ndlab_lab::page::Control::Error(format!("Pareto plot: {e}"))),
        }
    });
    let export = move |_| {
        let Some(data) = rel.report.with_untracked(|r| r.as_ref().map(pareto_data)) else { return };
        let svg =
            to_svg(900, 560, |area| draw_pareto(area, &data, &plots::style(ndlab_charts::ChartLayer::All)));
        if let Err(e) = svg.and_then(|text| download_svg("ndlab-pareto.svg", &text)) {
            ctx.control(ndlab_lab::page::Control::Error(e));
        }
    };
    view! {
        <article class="card wide" data-testid="pareto-plot">
            <div class="card-head">
                <h2>"Error against cost"</h2>
                <button class="svg" title="download as SVG" on:click=export>"SVG"</button>
            </div>
            <p class="blurb">"Relative weight error of every method over its ranks against MACs per output pixel: closed forms (ND, CD, SD) at every rank, CP and Tucker-2 at the budget's rank (up to 200 sweeps) and at the ranks of the 32×, 16×, 8× and 2× budgets (25 sweeps). Lower left is better; the red line is the budget."</p>
            <canvas node_ref=canvas class="rel-plot" data-chart="pareto"
                data-drawn=move || drawn.get().to_string() role="img" aria-label="error against cost"></canvas>
        </article>
    }
}

/// `<msup><mi>ℝ</mi><mrow>a×b</mrow></msup>` as MathML text.
fn space(dims: &[String]) -> String {
    format!("<msup><mi>ℝ</mi><mrow><mn>{}</mn></mrow></msup>", dims.join("</mn><mo>×</mo><mn>"))
}

fn factor(name: &str, dims: &[usize], extra: &str) -> String {
    let d: Vec<String> = dims.iter().map(|v| v.to_string()).collect();
    format!("<mrow><mi>{name}</mi><mo>∈</mo>{}{extra}</mrow>", space(&d))
}

/// The family as MathML, with the factor shapes of the loaded layer and the current T.
pub fn family_mathml(
    d: Dims,
    t: usize,
    r_budget: Option<usize>,
    expansion: usize,
) -> Vec<(String, String, String)> {
    let (n, c, k2) = (d.n, d.c, d.k2());
    let cp = "<math display=\"block\"><mrow><msub><mi>W</mi><mrow><mi>n</mi><mo>,</mo><mi>c</mi></mrow></msub><mo>=</mo><munderover><mo>∑</mo><mrow><mi>r</mi><mo>=</mo><mn>1</mn></mrow><mi>R</mi></munderover><msub><mi>A</mi><mrow><mi>n</mi><mi>r</mi></mrow></msub><mspace width=\"0.2em\"/><msub><mi>B</mi><mrow><mi>c</mi><mi>r</mi></mrow></msub><mspace width=\"0.2em\"/><msub><mi>D</mi><mi>r</mi></msub></mrow></math>";
    let sep = "<mo>,</mo><mspace width=\"1em\"/>";
    let ones = |m: usize| {
        format!(
            "<mrow><mo>=</mo><msub><mi>I</mi><mn>{m}</mn></msub><mo>⊗</mo><msubsup><mn>1</mn><mn>{t}</mn><mo>⊤</mo></msubsup></mrow>"
        )
    };
    let shapes =
        |parts: Vec<String>| format!("<math display=\"block\"><mrow>{}</mrow></math>", parts.join(sep));
    let r = r_budget.unwrap_or(1);
    vec![
        (
            "MobileNet-style CP (rank R)".to_string(),
            format!("1×1 conv C→R (Bᵀ), K×K depthwise on R channels (D), 1×1 conv R→N (A). At this budget R = {r}."),
            format!("{cp}{}", shapes(vec![factor("A", &[n, r], ""), factor("B", &[c, r], ""), factor("D", &[k2, r], "")])),
        ),
        (
            format!("ND DW→PW, T = {t}: CP with the channel factor fixed (R = C·T = {})", c * t),
            "B is a 0/1 replication matrix: each input channel feeds its own T depthwise filters, so the first 1×1 conv disappears (it is the depthwise conv's channel multiplier T).".into(),
            format!("{cp}{}", shapes(vec![factor("A", &[n, c * t], ""), factor("B", &[c, c * t], &ones(c)), factor("D", &[k2, c * t], "")])),
        ),
        (
            format!("ND PW→DW, T = {t}: CP with the output factor fixed (R = N·T = {})", n * t),
            "A is a 0/1 matrix that sums each output channel's T depthwise results: 1×1 conv C→N·T, K×K depthwise, groups of T summed.".into(),
            format!("{cp}{}", shapes(vec![factor("A", &[n, n * t], &ones(n)), factor("B", &[c, n * t], ""), factor("D", &[k2, n * t], "")])),
        ),
        (
            "MobileNetV1 block (DW→PW)".into(),
            "K×K depthwise on C channels then 1×1 C→N: ND DW→PW with T = 1 (B = I_C), trained rather than decomposed.".into(),
            format!("<math display=\"block\"><mrow><msub><mi>W</mi><mrow><mi>n</mi><mo>,</mo><mi>c</mi></mrow></msub><mo>=</mo><msub><mi>A</mi><mrow><mi>n</mi><mi>c</mi></mrow></msub><mspace width=\"0.2em\"/><msub><mi>D</mi><mi>c</mi></msub></mrow></math>{}",
                shapes(vec![factor("A", &[n, c], ""), factor("D", &[k2, c], "")])),
        ),
        (
            format!("MobileNetV2 block (PW→DW→PW), expansion E = {expansion}"),
            "1×1 C→E, K×K depthwise on E, 1×1 E→N: without the ReLU6 between them, a MobileNet-style CP of rank R = E.".into(),
            format!("{cp}{}", shapes(vec![factor("A", &[n, expansion], ""), factor("B", &[c, expansion], ""), factor("D", &[k2, expansion], "")])),
        ),
    ]
}

#[component]
fn Family() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    // Memos: the formulas are rebuilt only when T, the budget or the layer's shape change. They
    // follow T once it settles (no change for 250 ms): laying out MathML again on every step of
    // a slider drag would take longer than a frame, and the plots must move with the slider.
    let t_live = Memo::new(move |_| ctx.state.with(|s| s.t));
    let t_memo = RwSignal::new(ctx.state.with_untracked(|s| s.t));
    let generation = StoredValue::new(0u64);
    Effect::new(move |_| {
        let t = t_live.get();
        let mine = generation.get_value().wrapping_add(1);
        generation.set_value(mine);
        set_timeout(
            move || {
                if generation.get_value() == mine && t_memo.get_untracked() != t {
                    t_memo.set(t);
                }
            },
            std::time::Duration::from_millis(250),
        );
    });
    let x_memo = Memo::new(move |_| ctx.state.with(|s| s.speedup));
    let dims = Memo::new(move |_| {
        ctx.layer.with(|l| l.as_ref().map(|l| Dims { n: l.n, c: l.c, kh: l.kh, kw: l.kw }))
    });
    let items = move || {
        let t = t_memo.get();
        let x = x_memo.get();
        let d = dims.get()?;
        let b = (d.regular_macs() as f64 / x).floor() as u64;
        let r = ndlab_core::relatives::largest_rank(d, Method::CpMobilenet, b);
        Some(
            family_mathml(d, t, r, 6 * d.c)
                .into_iter()
                .map(|(title, text, math)| {
                    view! {
                        <div class="family-item">
                            <h3>{title}</h3>
                            <p class="blurb">{text}</p>
                            <div class="math" inner_html=math></div>
                        </div>
                    }
                })
                .collect_view(),
        )
    };
    view! {
        <article class="card wide family" data-testid="family-view">
            <h2>"The family: ND, MobileNet and CP"</h2>
            <p class="blurb">{move || {
                let t = t_memo.get();
                dims.get().map(|d| format!(
                    "For this layer (N = {}, C = {}, K = {}×{}) and T = {t}: W is N × C × K², each W_{{n,c}} a K×K filter.",
                    d.n, d.c, d.kh, d.kw
                )).unwrap_or_default()
            }}</p>
            {items}
        </article>
    }
}
