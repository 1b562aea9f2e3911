// Live mode of the web viewer: frames from a camera / capture card (or a video file played as
// if live) go to the gateway's live stream (WS /v1/live, docs/api.md) as JPEG images; each
// frame comes back with its plane and nerve contour and is drawn with them. The frame shown is
// the one the result belongs to (kept until its result arrives), so the outline never lags the
// picture; the status line gives the latency (frame sent -> result) and the frames skipped.

const MAX_BUFFERED = 2_000_000; // bytes queued on the socket before a capture is left out

export function initLive({ $, apiKey, planeChip, fmt, showError, onStart, onStop }) {
  const live = {
    ws: null,
    stream: null,
    timer: null,
    busy: false,
    next: 0,
    sent: new Map(), // index -> performance.now() at sending
    bitmaps: new Map(), // index -> ImageBitmap of the frame sent
    results: 0,
    skipped: 0,
    latencies: [],
    ended: false,
    last: null, // the last frame result drawn
    stored: null, // the id of the analysis a recorded stream became
  };
  const video = $("live-video");
  const capture = document.createElement("canvas");

  function status(text) {
    $("live-status").textContent = text;
  }

  function summary() {
    const lat = live.latencies.slice(-30).sort((a, b) => a - b);
    const median = lat.length ? lat[Math.floor(lat.length / 2)] : null;
    return `${live.next} sent · ${live.results} analysed · ${live.skipped} skipped` + (median === null ? "" : ` · latency ${fmt(median, 0)} ms`);
  }

  function drawResult(f) {
    const bmp = live.bitmaps.get(f.index);
    if (!bmp) return;
    const frame = $("live-frame");
    const overlay = $("live-overlay");
    for (const c of [frame, overlay]) {
      c.width = bmp.width;
      c.height = bmp.height;
    }
    $("live-stage").style.aspectRatio = `${bmp.width} / ${bmp.height}`;
    frame.getContext("2d").drawImage(bmp, 0, 0);
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    if (f.nerve_present && f.contour && f.contour.length > 2) {
      ctx.beginPath();
      f.contour.forEach(([x, y], i) => (i ? ctx.lineTo(x + 0.5, y + 0.5) : ctx.moveTo(x + 0.5, y + 0.5)));
      ctx.closePath();
      ctx.fillStyle = "rgba(34, 230, 120, 0.35)";
      ctx.fill();
      ctx.lineWidth = Math.max(1, bmp.width / 400);
      ctx.strokeStyle = "rgb(34, 230, 120)";
      ctx.stroke();
    }
    $("live-plane").replaceChildren(planeChip(f.plane), document.createTextNode(` ${fmt(100 * (f.confidence || 0), 0)} %`));
    $("live-csa").textContent = !f.nerve_present
      ? "no nerve"
      : f.csa_mm2 !== null && f.csa_mm2 !== undefined
        ? `${fmt(f.csa_mm2)} mm²`
        : `${fmt(f.csa_px, 0)} px²`;
    $("live-index").textContent = `frame ${f.index}`;
    live.last = f;
  }

  function forget(drawn) {
    // frames before the one drawn are done with (drawn, reported together, or skipped)
    for (const [i, bmp] of live.bitmaps) {
      if (i < drawn) {
        bmp.close();
        live.bitmaps.delete(i);
        live.sent.delete(i);
      }
    }
  }

  function onMessage(ev) {
    const msg = JSON.parse(ev.data);
    if (msg.type === "frames") {
      const now = performance.now();
      for (const f of msg.frames) {
        const t = live.sent.get(f.index);
        if (t !== undefined) live.latencies.push(now - t);
      }
      live.results += msg.frames.length;
      live.skipped += msg.skipped.length;
      if (msg.frames.length) {
        const newest = msg.frames[msg.frames.length - 1];
        drawResult(newest);
        forget(newest.index);
      }
      status(`live · ${summary()}`);
    } else if (msg.type === "error") {
      status(`live · ${summary()} · ${msg.code}: ${msg.message}`);
    } else if (msg.type === "end") {
      live.ended = true;
      status(`ended · ${summary()}${msg.reason ? ` (${msg.reason})` : ""}`);
      const stored = msg.analysis;
      if (stored && stored.id) {
        // the recording is an analysis now: a link opens it (its full analysis runs in the queue)
        live.stored = stored.id;
        const a = document.createElement("a");
        a.href = `#/analyses/${stored.id}`;
        a.id = "live-stored";
        a.textContent = `stored as analysis ${stored.id.slice(0, 8)}${stored.recording_full ? " (frames beyond the limit not kept)" : ""}`;
        $("live-status").append(" · ", a);
      } else if (stored && stored.error) {
        $("live-status").append(` · not stored: ${stored.error.message}`);
      }
    }
  }

  async function captureOne() {
    if (live.busy || !live.ws || live.ws.readyState !== WebSocket.OPEN) return;
    if (video.readyState < 2 || video.videoWidth === 0) return;
    if (live.ws.bufferedAmount > MAX_BUFFERED) return; // the network is behind: leave this one out
    live.busy = true;
    try {
      const bmp = await createImageBitmap(video);
      capture.width = bmp.width;
      capture.height = bmp.height;
      capture.getContext("2d").drawImage(bmp, 0, 0);
      const blob = await new Promise((resolve) => capture.toBlob(resolve, "image/jpeg", 0.92));
      if (!blob || !live.ws || live.ws.readyState !== WebSocket.OPEN) {
        bmp.close();
        return;
      }
      const index = live.next++;
      live.bitmaps.set(index, bmp);
      live.sent.set(index, performance.now());
      live.ws.send(blob);
    } finally {
      live.busy = false;
    }
  }

  function endStream() {
    if (live.timer) clearInterval(live.timer);
    live.timer = null;
    if (live.ws && live.ws.readyState === WebSocket.OPEN) live.ws.send(JSON.stringify({ type: "end" }));
  }

  function release() {
    if (live.timer) clearInterval(live.timer);
    live.timer = null;
    if (live.stream) for (const track of live.stream.getTracks()) track.stop();
    live.stream = null;
    video.pause();
    if (video.src) URL.revokeObjectURL(video.src);
    video.removeAttribute("src");
    video.srcObject = null;
    $("live-start").disabled = false; // Stop stays enabled: it also closes the live view after the stream ended
  }

  async function start() {
    if (live.ws) return;
    const source = $("live-source").value;
    Object.assign(live, { next: 0, results: 0, skipped: 0, latencies: [], ended: false, last: null, stored: null });
    live.sent.clear();
    for (const b of live.bitmaps.values()) b.close();
    live.bitmaps.clear();
    try {
      if (source === "camera") {
        if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
          throw new Error("this browser gives no camera access here (it needs https or localhost)");
        }
        live.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
        video.srcObject = live.stream;
      } else {
        const file = $("live-file").files[0];
        if (!file) throw new Error("choose a video file to play as if live");
        video.src = URL.createObjectURL(file);
      }
      video.muted = true;
      await video.play();
    } catch (err) {
      release();
      showError(err);
      return;
    }
    const q = new URLSearchParams();
    if (apiKey()) q.set("key", apiKey());
    const spacing = $("spacing").value.trim();
    if (spacing) q.set("pixel_spacing_mm", spacing);
    if ($("live-record").checked) {
      q.set("record", "true");
      q.set("fps", $("live-fps").value);
      for (const field of ["patient", "side", "visit"]) if ($(field).value.trim()) q.set(field, $(field).value.trim());
    }
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/v1/live?${q}`);
    live.ws = ws;
    $("live-start").disabled = true;
    $("live-stop").disabled = false;
    onStart();
    status("connecting…");
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "ready" && !live.timer) {
        const fps = Number($("live-fps").value) || 15;
        live.timer = setInterval(captureOne, 1000 / fps);
        status("live");
        return;
      }
      onMessage(ev);
    };
    ws.onclose = (ev) => {
      live.ws = null;
      release();
      if (!live.ended) status(`closed (${ev.code}${ev.reason ? `: ${ev.reason}` : ""}) · ${summary()}`);
    };
    video.onended = endStream; // a file played as if live: its end ends the stream
  }

  function stop() {
    endStream();
    release();
    $("live-stop").disabled = true;
    onStop();
  }

  $("live-start").addEventListener("click", start);
  $("live-stop").addEventListener("click", stop);
  $("live-source").addEventListener("change", () => {
    $("live-file-row").hidden = $("live-source").value !== "file";
  });
  return live;
}
