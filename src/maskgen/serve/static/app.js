// maskgen editor: plain JavaScript over the JSON API of maskgen.serve.app (no build step).
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");
const hitCtx = document.createElement("canvas").getContext("2d");

const ui = {
  state: null,        // the last state the API returned
  image: null,        // the rendered scene (HTMLImageElement)
  unc: null,          // the selected instance's uncertainty map
  detail: null,       // the selected instance's candidates
  selected: null,     // instance id
  hover: null,
  scale: 1,
  drag: null,         // {id, x0, y0, dx, dy} while moving
  mode: "edit",       // "edit" | "box" | "draw"
  box: null,          // {x0, y0, x1, y1} while drawing an amodal box
  drawImage: null,    // the image being outlined in "draw" mode (File + HTMLImageElement)
  polys: [],          // finished polygons (draw mode)
  current: [],        // the polygon being drawn
  busy: false,
};
window.maskgen = ui;  // for the browser tests and the curious

function status(msg, isError) {
  const el = $("status");
  el.textContent = msg || "";
  el.className = isError ? "error" : "";
}

async function api(method, url, body) {
  const opts = { method, headers: {} };
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers["Content-Type"] = "application/json";
  }
  const r = await fetch(url, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = { error: `${r.status} ${r.statusText}` }; }
  if (!r.ok) throw new Error(data.error || `${r.status} ${r.statusText}`);
  return data;
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const im = new Image();
    im.onload = () => resolve(im);
    im.onerror = () => reject(new Error(`could not load ${src}`));
    im.src = src;
  });
}

function sceneUrl(suffix) {
  return `/api/scenes/${ui.state.scene_id}${suffix}`;
}

function instance(id) {
  return ui.state ? ui.state.instances.find((i) => i.id === id) || null : null;
}

function pathOf(polys, dx = 0, dy = 0) {
  const p = new Path2D();
  for (const poly of polys) {
    for (let i = 0; i < poly.length; i += 2) {
      const x = poly[i] + dx, y = poly[i + 1] + dy;
      if (i === 0) p.moveTo(x, y); else p.lineTo(x, y);
    }
    p.closePath();
  }
  return p;
}

// ------------------------------------------------------------------------------ state

async function setState(state) {
  const sameScene = ui.state && ui.state.scene_id === state.scene_id;
  ui.state = state;
  if (!sameScene) {
    ui.selected = null;
    ui.scale = Math.max(1, Math.floor(640 / Math.max(state.width, state.height)));
    canvas.width = state.width * ui.scale;
    canvas.height = state.height * ui.scale;
    hitCtx.canvas.width = state.width;
    hitCtx.canvas.height = state.height;
  }
  if (ui.selected !== null && !instance(ui.selected)) ui.selected = null;
  ui.image = await loadImage(sceneUrl(`/render.png?v=${state.version}`));
  for (const [id, suffix] of [["dl-image", "/render.png"], ["dl-zip", "/layers.zip"],
                              ["dl-coco", "/export?format=coco"], ["dl-kins", "/export?format=kins2020"]]) {
    $(id).href = sceneUrl(suffix);
  }
  await loadDetail();
  renderPanels();
  draw();
  document.body.dataset.version = String(state.version);
  document.body.dataset.ready = "1";
}

async function loadDetail() {
  ui.detail = null;
  ui.unc = null;
  if (ui.selected === null) return;
  ui.detail = await api("GET", sceneUrl(`/instances/${ui.selected}`));
  if ($("show-unc").checked) {
    ui.unc = await loadImage(sceneUrl(`/instances/${ui.selected}/uncertainty.png?v=${ui.state.version}`));
  }
}

async function op(body) {
  if (!ui.state || ui.busy) return;
  ui.busy = true;
  document.body.dataset.busy = "1";
  try {
    const state = await api("POST", sceneUrl("/ops"), body);
    status(`${body.op}${body.instance !== undefined ? " " + body.instance : ""}: done`);
    await setState(state);
  } catch (e) {
    status(e.message, true);
    draw();
  } finally {
    ui.busy = false;
    document.body.dataset.busy = "0";
  }
}

async function select(id) {
  ui.selected = id;
  await loadDetail();
  renderPanels();
  draw();
}

// ------------------------------------------------------------------------------ drawing

function draw() {
  const s = ui.scale;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.imageSmoothingEnabled = false;
  if (ui.mode === "draw") return drawPolygonMode();
  if (!ui.state || !ui.image) return;
  ctx.setTransform(s, 0, 0, s, 0, 0);
  ctx.drawImage(ui.image, 0, 0);
  ctx.lineJoin = "round";
  for (const inst of ui.state.instances) {
    const p = pathOf(inst.visible);
    if (inst.id === ui.hover && inst.id !== ui.selected) {
      ctx.fillStyle = "rgba(255,255,255,0.25)";
      ctx.fill(p);
    }
    ctx.strokeStyle = "rgba(255,255,255,0.8)";
    ctx.lineWidth = 1 / s;
    ctx.stroke(p);
  }
  const sel = instance(ui.selected);
  if (sel) {
    const d = ui.drag && ui.drag.id === sel.id ? ui.drag : { dx: 0, dy: 0 };
    if (ui.unc && !ui.drag) ctx.drawImage(ui.unc, 0, 0);
    if (ui.drag && ui.drag.id === sel.id && (d.dx || d.dy)) {
      // Preview: the object's visible pixels follow the pointer until the server answers.
      ctx.save();
      ctx.clip(pathOf(sel.visible, d.dx, d.dy));
      ctx.drawImage(ui.image, d.dx, d.dy);
      ctx.restore();
    }
    ctx.fillStyle = "rgba(0,200,255,0.30)";
    ctx.fill(pathOf(sel.visible, d.dx, d.dy));
    ctx.setLineDash([4 / s, 3 / s]);
    ctx.strokeStyle = "#ffd600";
    ctx.lineWidth = 2 / s;
    ctx.stroke(pathOf(sel.amodal, d.dx, d.dy));
    ctx.setLineDash([]);
    if (ui.detail && !ui.drag) {
      const cand = ui.detail.candidates[ui.detail.choice];
      ctx.strokeStyle = "#ff4081";
      ctx.lineWidth = 1 / s;
      if (cand) ctx.stroke(pathOf(cand.polygons));
    }
  }
  if (ui.box) {
    const b = ui.box;
    ctx.strokeStyle = "#00e676";
    ctx.lineWidth = 2 / s;
    ctx.strokeRect(Math.min(b.x0, b.x1), Math.min(b.y0, b.y1), Math.abs(b.x1 - b.x0), Math.abs(b.y1 - b.y0));
  }
}

function drawPolygonMode() {
  const s = ui.scale;
  ctx.setTransform(s, 0, 0, s, 0, 0);
  if (ui.drawImage) ctx.drawImage(ui.drawImage.img, 0, 0);
  ctx.lineWidth = 2 / s;
  for (const poly of ui.polys) {
    ctx.fillStyle = "rgba(0,200,255,0.35)";
    ctx.fill(pathOf([poly]));
  }
  if (ui.current.length) {
    ctx.strokeStyle = "#ffd600";
    const p = new Path2D();
    for (let i = 0; i < ui.current.length; i += 2) {
      if (i === 0) p.moveTo(ui.current[0], ui.current[1]); else p.lineTo(ui.current[i], ui.current[i + 1]);
    }
    ctx.stroke(p);
  }
}

function renderPanels() {
  const st = ui.state;
  const sel = instance(ui.selected);
  for (const id of ["erase-btn", "front-btn", "back-btn", "sample-btn", "box-btn"]) {
    $(id).disabled = !sel || ui.mode === "draw";
  }
  $("reshape-btn").disabled = !sel || ui.mode === "draw";
  $("reshape-kind").disabled = !sel || ui.mode === "draw";
  $("undo-btn").disabled = !st || !st.can_undo;
  $("redo-btn").disabled = !st || !st.can_redo;
  $("box-btn").classList.toggle("active", ui.mode === "box");
  $("details").textContent = sel
    ? `#${sel.id} ${sel.category} · visible ${sel.visible_area} px · completed ${sel.amodal_area} px · ` +
      `box ${sel.box_source} · uncertainty ${sel.uncertainty}`
    : "nothing selected";
  const cl = $("candidates");
  cl.replaceChildren();
  if (ui.detail) {
    for (const c of ui.detail.candidates) {
      const li = document.createElement("li");
      li.textContent = `${c.kind === "mode" ? "mode" : "sample " + c.k} · consistency ${c.score.toFixed(3)}`;
      li.dataset.k = c.k;
      if (c.k === ui.detail.choice) li.className = "selected";
      li.onclick = () => op({ op: "sample", instance: ui.selected, k: c.k });
      cl.appendChild(li);
    }
  }
  const ll = $("layers");
  ll.replaceChildren();
  if (st) {
    for (const inst of st.instances) {
      const li = document.createElement("li");
      li.textContent = `#${inst.id} ${inst.category}`;
      li.dataset.id = inst.id;
      if (inst.id === ui.selected) li.className = "selected";
      li.onclick = () => select(inst.id);
      ll.appendChild(li);
    }
  }
}

// ------------------------------------------------------------------------------ pointer

function imagePoint(ev) {
  const r = canvas.getBoundingClientRect();
  return {
    x: ((ev.clientX - r.left) / r.width) * canvas.width / ui.scale,
    y: ((ev.clientY - r.top) / r.height) * canvas.height / ui.scale,
  };
}

function hit(pt) {
  if (!ui.state) return null;
  for (const inst of ui.state.instances) {  // nearest first
    if (hitCtx.isPointInPath(pathOf(inst.visible), pt.x, pt.y)) return inst.id;
  }
  return null;
}

canvas.addEventListener("mousedown", (ev) => {
  const pt = imagePoint(ev);
  if (ui.mode === "draw") return;
  if (ui.mode === "box") {
    ui.box = { x0: pt.x, y0: pt.y, x1: pt.x, y1: pt.y };
    return;
  }
  const id = hit(pt);
  if (id === null) { if (ui.selected !== null) select(null); return; }
  if (id !== ui.selected) select(id);
  ui.drag = { id, x0: pt.x, y0: pt.y, dx: 0, dy: 0, moved: false };
});

canvas.addEventListener("mousemove", (ev) => {
  const pt = imagePoint(ev);
  if (ui.box) {
    ui.box.x1 = pt.x; ui.box.y1 = pt.y;
    draw();
    return;
  }
  if (ui.drag) {
    ui.drag.dx = Math.round(pt.x - ui.drag.x0);
    ui.drag.dy = Math.round(pt.y - ui.drag.y0);
    ui.drag.moved = ui.drag.moved || Math.abs(ui.drag.dx) + Math.abs(ui.drag.dy) >= 2;
    canvas.classList.add("moving");
    draw();
    return;
  }
  if (ui.mode !== "edit") return;
  const h = hit(pt);
  if (h !== ui.hover) { ui.hover = h; draw(); }
});

window.addEventListener("mouseup", async () => {
  if (ui.box) {
    const b = ui.box;
    ui.box = null;
    setMode("edit");
    const box = [Math.min(b.x0, b.x1), Math.min(b.y0, b.y1), Math.max(b.x0, b.x1), Math.max(b.y0, b.y1)]
      .map((v) => Math.round(v * 10) / 10);
    await op({ op: "amodal_box", instance: ui.selected, box });
    return;
  }
  if (!ui.drag) return;
  const d = ui.drag;
  ui.drag = null;
  canvas.classList.remove("moving");
  if (d.moved && (d.dx || d.dy)) await op({ op: "move", instance: d.id, dx: d.dx, dy: d.dy });
  else draw();
});

canvas.addEventListener("mouseleave", () => { if (ui.hover !== null) { ui.hover = null; draw(); } });

canvas.addEventListener("click", (ev) => {
  if (ui.mode !== "draw") return;
  const pt = imagePoint(ev);
  ui.current.push(Math.round(pt.x * 10) / 10, Math.round(pt.y * 10) / 10);
  draw();
});

canvas.addEventListener("dblclick", () => { if (ui.mode === "draw") closePolygon(); });

function closePolygon() {
  // A double-click adds its point twice; drop repeated points.
  const pts = [];
  for (let i = 0; i < ui.current.length; i += 2) {
    const n = pts.length;
    if (n && pts[n - 2] === ui.current[i] && pts[n - 1] === ui.current[i + 1]) continue;
    pts.push(ui.current[i], ui.current[i + 1]);
  }
  if (pts.length >= 6) ui.polys.push(pts);
  ui.current = [];
  draw();
}

// ------------------------------------------------------------------------------ buttons

function setMode(mode) {
  ui.mode = mode;
  canvas.classList.toggle("boxing", mode === "box");
  canvas.classList.toggle("drawing", mode === "draw");
  $("draw-tools").hidden = mode !== "draw";
  $("hint").textContent = {
    edit: "Click an object to select it; drag to move it.",
    box: "Drag a rectangle: the amodal box of the selected object.",
    draw: "Outline each object (click points); Enter closes one; then start editing.",
  }[mode];
  renderPanels();
}

for (const id of ["erase-btn", "front-btn", "back-btn", "sample-btn"]) {
  $(id).addEventListener("click", () => {
    if (ui.selected !== null) op({ op: $(id).dataset.op, instance: ui.selected });
  });
}
$("box-btn").addEventListener("click", () => setMode(ui.mode === "box" ? "edit" : "box"));
ui.reshapeCount = 0;
$("reshape-btn").addEventListener("click", () => {
  if (ui.selected === null) return;
  const [kind, value] = $("reshape-kind").value.split(":");
  const body = { op: "reshape", instance: ui.selected, kind };
  if (kind === "rotate") body.degrees = Number(value);
  if (kind === "scale") body.scale = Number(value);
  if (kind === "sample") {
    const n = ui.detail ? ui.detail.candidates.length - 1 : 0;  // candidates: mode + samples
    body.k = n > 0 ? ui.reshapeCount % n : 0;
  }
  if (kind === "prior") body.seed = ui.reshapeCount;
  ui.reshapeCount += 1;
  op(body);
});
$("undo-btn").addEventListener("click", () => op({ op: "undo" }));
$("redo-btn").addEventListener("click", () => op({ op: "redo" }));
$("show-unc").addEventListener("change", async () => { await loadDetail(); draw(); });

document.addEventListener("keydown", (ev) => {
  if (ui.mode === "draw" && ev.key === "Enter") { closePolygon(); return; }
  if (ev.target instanceof HTMLInputElement) return;
  const mod = ev.ctrlKey || ev.metaKey;
  if (mod && ev.key.toLowerCase() === "z") { ev.preventDefault(); op({ op: ev.shiftKey ? "redo" : "undo" }); }
  else if (mod && ev.key.toLowerCase() === "y") { ev.preventDefault(); op({ op: "redo" }); }
  else if ((ev.key === "Delete" || ev.key === "Backspace") && ui.selected !== null) {
    op({ op: "erase", instance: ui.selected });
  } else if (ev.key === "Escape") { ui.current = []; setMode(ui.mode === "draw" ? "draw" : "edit"); draw(); }
});

async function openWith(form) {
  status("decomposing the scene…");
  try {
    const state = await api("POST", "/api/scenes", form);
    status(`opened: ${state.instances.length} objects`);
    await setState(state);
  } catch (e) {
    status(e.message, true);
  }
}

$("open-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const image = $("image-file").files[0];
  const masks = $("masks-file").files[0];
  if (!image) { status("choose an image first", true); return; }
  if (!masks) { status("choose a masks JSON, or use 'draw masks…' to outline the objects", true); return; }
  const form = new FormData();
  form.append("image", image);
  form.append("masks", masks);
  await openWith(form);
});

$("draw-btn").addEventListener("click", async () => {
  const file = $("image-file").files[0];
  if (!file) { status("choose an image first, then outline its objects", true); return; }
  const url = URL.createObjectURL(file);
  try {
    const img = await loadImage(url);
    ui.drawImage = { file, img };
    ui.polys = []; ui.current = [];
    ui.scale = Math.max(1, Math.floor(640 / Math.max(img.width, img.height)));
    canvas.width = img.width * ui.scale;
    canvas.height = img.height * ui.scale;
    setMode("draw");
    draw();
  } catch (e) { status(e.message, true); }
});

$("draw-done-btn").addEventListener("click", async () => {
  if (ui.current.length) closePolygon();
  if (!ui.polys.length) { status("outline at least one object", true); return; }
  const form = new FormData();
  form.append("image", ui.drawImage.file);
  form.append("polygons", JSON.stringify(ui.polys.map((points) => ({ points }))));
  setMode("edit");
  ui.state = null;
  await openWith(form);
});

$("draw-cancel-btn").addEventListener("click", () => {
  ui.polys = []; ui.current = [];
  setMode("edit");
  if (ui.state) { const st = ui.state; ui.state = null; setState(st); }
});

$("example-btn").addEventListener("click", () => openExample());

async function openExample() {
  status("decomposing the example scene…");
  try {
    const state = await api("POST", "/api/scenes/example");
    status(`example scene: ${state.instances.length} objects`);
    await setState(state);
  } catch (e) {
    status(e.message, true);
  }
}

openExample();
