//! "Bring your own model": the file button, drag-and-drop anywhere on the page, the layer picker
//! and the BatchNorm-fold option. The `File` goes to the Web Worker next to an `OpenFile` request
//! (a structured clone of a File is a handle, not a copy); the worker reads it by range. Nothing is
//! uploaded, and the URL never names the file: a link cannot carry a file, so the address bar keeps
//! the built-in example and the settings (the page says so while a file layer is shown).

use super::Ctx;
use leptos::prelude::*;
use ndlab_io::formats::Layout;
use ndlab_lab::files::{FileLayer, FileListing};
use ndlab_lab::page::Control;
use ndlab_lab::protocol::RequestBody;

/// The picker's text for one layer.
fn layer_label(l: &FileLayer, hw: (usize, usize)) -> String {
    let [n, c, kh, kw] = l.shape;
    let macs =
        l.macs.map(|m| format!("{:.2} M MACs at {}×{}", m as f64 / 1e6, hw.0, hw.1)).unwrap_or_default();
    let too = if l.too_large { " — over the size limit" } else { "" };
    format!(
        "{} — {n}×{c}×{kh}×{kw} {} · {macs} · full rank {} (DW→PW) / {} (PW→DW){too}",
        l.name, l.dtype, l.full_rank.0, l.full_rank.1
    )
}

/// "12.3 MB" or "4.6 KB".
fn megabytes(b: u64) -> String {
    if b < 1_000_000 {
        format!("{:.1} KB", b as f64 / 1e3)
    } else {
        format!("{:.1} MB", b as f64 / 1e6)
    }
}

/// Opens `file` in the worker.
fn open(
    ctx: Ctx,
    file: web_sys::File,
    layout: Layout,
    current: StoredValue<Option<web_sys::File>, LocalStorage>,
) {
    let label = format!("opening {}", file.name());
    ctx.control_with_file(
        Control::Request(RequestBody::OpenFile { name: file.name(), layout }, label),
        &file,
    );
    current.set_value(Some(file));
}

/// The model-file panel (mounted once in the page).
#[component]
pub fn FilePanel() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let current: StoredValue<Option<web_sys::File>, LocalStorage> = StoredValue::new_local(None);
    let layout = RwSignal::new(Layout::Oihw);
    let fold = RwSignal::new(true);
    let picked = RwSignal::new(String::new());
    let dragging = RwSignal::new(false);

    let load = move || {
        let layer = picked.get_untracked();
        if layer.is_empty() {
            return;
        }
        // Folding is offered (and on by default) only where a BatchNorm follows.
        let has_bn = ctx.file.with_untracked(|f| {
            f.as_ref().is_some_and(|f| f.layers.iter().any(|l| l.name == layer && l.bn.is_some()))
        });
        let label = format!("loading '{layer}'");
        ctx.control(Control::Request(
            RequestBody::LoadFileLayer { layer, fold_bn: has_bn && fold.get_untracked() },
            label,
        ));
    };
    // A new listing: nothing picked yet; a file with one layer loads it at once.
    Effect::new(move |_| {
        let only =
            ctx.file.with(|f| f.as_ref().filter(|f| f.layers.len() == 1).map(|f| f.layers[0].name.clone()));
        picked.set(only.clone().unwrap_or_default());
        if only.is_some() {
            load();
        }
    });

    let _ = window_event_listener(leptos::ev::dragover, move |ev: web_sys::DragEvent| {
        ev.prevent_default();
        dragging.set(true);
    });
    let _ = window_event_listener(leptos::ev::dragleave, move |_| dragging.set(false));
    let _ = window_event_listener(leptos::ev::drop, move |ev: web_sys::DragEvent| {
        ev.prevent_default();
        dragging.set(false);
        if let Some(file) = ev.data_transfer().and_then(|d| d.files()).and_then(|f| f.get(0)) {
            open(ctx, file, layout.get_untracked(), current);
        }
    });
    let on_file = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        if let Some(file) = input.files().and_then(|f| f.get(0)) {
            open(ctx, file, layout.get_untracked(), current);
        }
        // Picking the same file again fires `change` again.
        input.set_value("");
    };
    let on_layout = move |ev: leptos::ev::Event| {
        layout.set(if event_target_value(&ev) == "hwio" { Layout::Hwio } else { Layout::Oihw });
        if let Some(f) = current.get_value() {
            open(ctx, f, layout.get_untracked(), current);
        }
    };
    let is_file_layer =
        move || ctx.layer.with(|l| l.as_ref().is_some_and(|l| l.example.starts_with("file#")));
    let picked_layer = move || {
        let name = picked.get();
        ctx.file.with(|f| f.as_ref().and_then(|f| f.layers.iter().find(|l| l.name == name).cloned()))
    };
    let back_to_example = move |_| ctx.control(Control::ReloadExample);

    view! {
        <section class="files" class:dragging=move || dragging.get() aria-label="your model file" data-testid="file-panel">
            <div class="files-row">
                <label class="file-button">"Your model file "
                    <input type="file" data-testid="file-input"
                        accept=".npy,.npz,.safetensors,.onnx,.pt,.pth,.bin" on:change=on_file/>
                </label>
                <span class="muted">"or drop it anywhere on this page: .npy, .npz, .safetensors, .onnx, PyTorch .pt/.pth. It is read in this browser and never uploaded."</span>
                <label>"raw arrays are "
                    <select data-testid="layout-select" on:change=on_layout>
                        <option value="oihw" selected=true>"OIHW (PyTorch, ONNX)"</option>
                        <option value="hwio">"HWIO (TensorFlow, Keras)"</option>
                    </select>
                </label>
            </div>
            {move || ctx.file.get().map(|f| listing_view(f, picked, load))}
            <Show when=move || picked_layer().is_some_and(|l| l.bn.is_some())>
                <label class="fold">
                    <input type="checkbox" data-testid="fold-bn" prop:checked=move || fold.get()
                        on:change=move |ev| { fold.set(event_target_checked(&ev)); load(); }/>
                    {move || format!("fold the following BatchNorm ({}) into the weights and bias first",
                        picked_layer().and_then(|l| l.bn).unwrap_or_default())}
                </label>
            </Show>
            <Show when=is_file_layer>
                <p class="link-note" data-testid="file-link-note">
                    "A link cannot carry a file: the address bar keeps the built-in example and your settings, so a copied link opens "
                    <em>{move || ctx.state.with(|s| ndlab_lab::examples::find(&s.example).map(|e| e.title).unwrap_or("the example"))}</em>
                    " with them. "
                    <button data-testid="back-to-example" on:click=back_to_example>"back to the example"</button>
                </p>
            </Show>
        </section>
    }
}

/// The opened file's name, size, format and layer picker.
fn listing_view(f: FileListing, picked: RwSignal<String>, load: impl Fn() + Copy + 'static) -> impl IntoView {
    let hw = f.input_hw;
    let skipped = if f.skipped_total > 0 {
        format!(
            " · {} other tensor(s) not loadable as conv layers (listed below the layers)",
            f.skipped_total
        )
    } else {
        String::new()
    };
    let layout = if f.layout_applies {
        match f.layout {
            Layout::Oihw => " · read as OIHW",
            Layout::Hwio => " · read as HWIO",
        }
    } else {
        ""
    };
    let summary = format!(
        "{} — {}, {}, {} conv layer(s){layout}{skipped}",
        f.file_name,
        f.format,
        megabytes(f.size),
        f.layers.len()
    );
    view! {
        <div class="files-row">
            <span class="file-name" data-testid="file-name">{summary}</span>
        </div>
        <div class="files-row">
            <label>"Layer "
                <select data-testid="layer-select" on:change=move |ev| {
                    picked.set(event_target_value(&ev));
                    load();
                }>
                    <option value="" disabled=true prop:selected=move || picked.with(|p| p.is_empty())>"— pick a layer —"</option>
                    {f.layers.iter().map(|l| {
                        let name = l.name.clone();
                        let sel = name.clone();
                        view! {
                            <option value=name prop:selected=move || picked.with(|p| *p == sel)>{layer_label(l, hw)}</option>
                        }
                    }).collect_view()}
                    {f.skipped.iter().map(|s| view! {
                        <option value=s.name.clone() disabled=true class="skipped">
                            {format!("{} — not loadable: {}", s.name, s.reason)}
                        </option>
                    }).collect_view()}
                </select>
            </label>
        </div>
    }
}
