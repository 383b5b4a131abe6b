// The robot_rl intervention console page. No build step, no dependencies.
// The WebSocket protocol it speaks is defined in robot_rl/console/protocol.py.
'use strict';

(() => {
  // ------------------------------------------------------------------ constants
  const TELEOP_PERIOD_MS = 20; // protocol.TELEOP_PERIOD_S: teleop + heartbeat cadence while holding a lease
  const PING_PERIOD_MS = 2000;
  const FPS_PERIOD_MS = 500; // camera fps and the connection line are refreshed this often
  const BACKOFF_MIN_MS = 250;
  const BACKOFF_MAX_MS = 5000;
  const LEASE_GRACE_MS = 500; // how long a local take/give-back overrides the (older) state we receive
  const MAX_BUFFERED_BYTES = 8192; // a socket with more unsent than this is stalled: send no teleop into it
  const LATENCY_PENDING_MS = 3000; // a keydown whose command was never applied is forgotten after this
  const MAX_NOTICES = 60;
  const DEADZONE = 0.15;
  const INTERVENTION_WINDOW = 10; // episodes in the rolling intervention rate

  // Keyboard bindings, by KeyboardEvent.code (the physical key, whatever the layout).
  const DEADMAN_KEYS = new Set(['Space', 'ShiftLeft', 'ShiftRight']);
  // [action index in the 7-dim layout x, y, z, rx, ry, rz; sign]
  const MOTION_KEYS = {
    KeyW: [0, +1], KeyS: [0, -1], // x forward / back
    KeyA: [1, +1], KeyD: [1, -1], // y left / right
    KeyR: [2, +1], KeyF: [2, -1], // z up / down
    KeyU: [3, +1], KeyO: [3, -1], // roll (7-dim only)
    KeyI: [4, +1], KeyK: [4, -1], // pitch (7-dim only)
    KeyJ: [5, +1], KeyL: [5, -1], // yaw (7-dim only)
  };
  const GRIPPER_KEYS = { KeyC: +1, KeyV: -1 }; // close / open; no key keeps it
  const ESTOP_KEY = 'Escape';

  // Gamepad (standard mapping) buttons.
  const PAD = { deadman: 4, open: 5, close: 7, success: 3, failure: 0, discard: 2 };

  // ------------------------------------------------------------------ state
  const S = {
    ws: null,
    connected: false,
    backoffMs: BACKOFF_MIN_MS,
    reconnectAt: 0,
    client: null,
    robots: [],
    actionDim: {},
    selected: null,
    state: {}, // robot -> RobotView of the last state message
    stateAt: 0,
    leaseOverride: {}, // robot -> {value, until}: our own take/give-back until the state catches up
    seq: 0, // teleop seq: one counter for the page, increasing across robots and reconnects
    keys: new Set(), // held KeyboardEvent.codes we handle
    deadmanWasHeld: false,
    lastSent: {}, // robot -> JSON of the last teleop (active, action) sent
    pad: { connected: false, deadman: false, action: null, buttons: {} },
    pendingLatency: [], // [{robot, seq, t}] keydowns waiting for their applied seq
    decoding: {}, // camera key -> a decode in progress
    latestBlob: {}, // camera key -> the newest frame waiting for the decoder
    framesAtLastFps: {},
    fpsAt: performance.now(),
    camerasShown: '',
    notices: [],
    telemetry: null,
  };

  // What tests and the benchmark read (execute_script('return window.consoleStats')).
  const stats = {
    latencies_ms: [], // keydown -> applied, per command-changing keydown
    frames: {}, // 'robot/camera' -> frames received
    drawn: {}, // 'robot/camera' -> frames drawn
    fps: {}, // 'robot/camera' -> frames received per second (over the last 0.5 s)
    messages: 0, // messages received
    sent: 0, // messages sent
    teleop_sent: 0,
    rtt_ms: null,
    lastState: null,
    lastTelemetry: null,
    notices: [], // [{level, text}] as received or raised on the page
  };
  window.consoleStats = stats;

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ the socket
  function socketUrl() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const token = new URLSearchParams(location.search).get('token');
    return `${scheme}//${location.host}/ws` + (token ? `?token=${encodeURIComponent(token)}` : '');
  }

  function connect() {
    S.reconnectAt = 0;
    const ws = new WebSocket(socketUrl());
    ws.binaryType = 'arraybuffer';
    S.ws = ws;
    ws.onmessage = (ev) => onMessage(ev.data);
    ws.onclose = () => onClose(ws);
    ws.onerror = () => {}; // onclose follows
  }

  function onClose(ws) {
    if (S.ws !== ws) return;
    S.connected = false;
    S.client = null;
    S.leaseOverride = {};
    S.lastSent = {};
    S.reconnectAt = performance.now() + S.backoffMs;
    setTimeout(connect, S.backoffMs);
    S.backoffMs = Math.min(S.backoffMs * 2, BACKOFF_MAX_MS);
    renderConnection();
  }

  function socketOpen() {
    return S.ws !== null && S.ws.readyState === WebSocket.OPEN;
  }

  function send(msg) {
    if (!socketOpen()) return false;
    S.ws.send(JSON.stringify(msg));
    stats.sent += 1;
    return true;
  }

  function onMessage(data) {
    stats.messages += 1;
    if (data instanceof ArrayBuffer) {
      onFrame(data);
      return;
    }
    const msg = JSON.parse(data);
    switch (msg.type) {
      case 'hello': return onHello(msg);
      case 'state': return onState(msg);
      case 'telemetry': return onTelemetry(msg);
      case 'applied': return onApplied(msg);
      case 'notice': return addNotice(msg.level, msg.text);
      case 'pong':
        stats.rtt_ms = performance.now() - msg.t;
        return renderConnection();
      default: return undefined;
    }
  }

  function onHello(msg) {
    S.connected = true;
    S.backoffMs = BACKOFF_MIN_MS;
    S.client = msg.client;
    S.robots = msg.robots || [];
    S.actionDim = msg.action_dim || {};
    if (!S.robots.includes(S.selected)) S.selected = S.robots[0] || null;
    renderTabs();
    renderCommand();
    renderConnection();
  }

  function onState(msg) {
    S.state = msg.robots || {};
    S.stateAt = performance.now();
    stats.lastState = msg;
    for (const robot of Object.keys(S.state)) {
      const o = S.leaseOverride[robot];
      if (o && S.state[robot].lease === o.value) delete S.leaseOverride[robot]; // confirmed
    }
    const names = Object.keys(S.state);
    if (names.join() !== S.robots.join()) { // robots added after hello
      S.robots = names;
      if (!S.robots.includes(S.selected)) S.selected = S.robots[0] || null;
      renderTabs();
    }
    renderState();
  }

  function onTelemetry(msg) {
    S.telemetry = msg;
    stats.lastTelemetry = msg;
    renderTelemetry();
  }

  // ------------------------------------------------------------------ lease
  function leaseOf(robot) {
    const o = S.leaseOverride[robot];
    if (o && performance.now() < o.until) return o.value;
    const view = S.state[robot];
    return view ? view.lease : 'free';
  }

  // Take the lease; while the state catches up, a free lease counts as ours (another page's is asked
  // for all the same: the console grants it when that page went silent, or says why not).
  function takeLease(robot) {
    const wasFree = leaseOf(robot) === 'free';
    if (!robot || !send({ type: 'lease', robot, take: true })) return;
    if (wasFree) S.leaseOverride[robot] = { value: 'you', until: performance.now() + LEASE_GRACE_MS };
  }

  // Hand back: stop driving first (active=false), then give the lease back.
  function releaseLease(robot) {
    if (!robot) return;
    sendTeleop(robot, false, zeros(robot));
    send({ type: 'lease', robot, take: false });
    S.leaseOverride[robot] = { value: 'free', until: performance.now() + LEASE_GRACE_MS };
    delete S.lastSent[robot];
  }

  function releaseAll() {
    for (const robot of S.robots) if (leaseOf(robot) === 'you') releaseLease(robot);
  }

  // ------------------------------------------------------------------ the person's command
  function actionDim(robot) {
    return S.actionDim[robot] === 7 ? 7 : 4;
  }

  function zeros(robot) {
    return new Array(actionDim(robot)).fill(0);
  }

  function deadmanHeld() {
    for (const code of DEADMAN_KEYS) if (S.keys.has(code)) return true;
    return S.pad.deadman;
  }

  function clip(v) {
    return Math.max(-1, Math.min(1, v));
  }

  // The action in the robot's layout: x, y, z, (rx, ry, rz,) gripper; keyboard and gamepad added.
  function currentAction(robot) {
    const dim = actionDim(robot);
    const motion = [0, 0, 0, 0, 0, 0];
    for (const code of S.keys) {
      const m = MOTION_KEYS[code];
      if (m) motion[m[0]] += m[1];
    }
    let gripper = 0;
    for (const code of S.keys) if (code in GRIPPER_KEYS) gripper += GRIPPER_KEYS[code];
    const pad = S.pad.action;
    if (pad) {
      for (let i = 0; i < 6; i++) motion[i] += pad[i];
      if (gripper === 0) gripper = pad[6];
    }
    const out = motion.slice(0, dim === 7 ? 6 : 3).map(clip);
    out.push(clip(gripper));
    return out;
  }

  function speed() {
    return Number($('speed').value);
  }

  // One teleop message; null when none went out. A stalled socket gets nothing: a command that would
  // queue up behind others and arrive late is worse than none (the hub then stops on silence).
  function sendTeleop(robot, active, action) {
    if (!socketOpen() || S.ws.bufferedAmount > MAX_BUFFERED_BYTES) return null;
    S.seq += 1;
    const seq = S.seq;
    send({ type: 'teleop', robot, seq, active, action, speed: speed() });
    stats.teleop_sent += 1;
    S.lastSent[robot] = JSON.stringify([active, action]);
    return seq;
  }

  function visible() {
    return document.visibilityState === 'visible';
  }

  // Every TELEOP_PERIOD_MS: poll the gamepad, then send each held robot its command (the heartbeat).
  function teleopTick() {
    pollGamepad();
    if (!visible()) return;
    for (const robot of S.robots) {
      if (leaseOf(robot) !== 'you') continue;
      const active = robot === S.selected && deadmanHeld();
      sendTeleop(robot, active, active ? currentAction(robot) : zeros(robot));
    }
  }

  // The input changed (key down/up, blur, gamepad): send at once rather than at the next tick.
  // `keydownAt` (performance.now() of a keydown) is remembered for the latency statistics.
  function inputChanged(keydownAt) {
    const robot = S.selected;
    if (!robot) return;
    const held = deadmanHeld();
    if (held && !S.deadmanWasHeld) onDeadmanPressed(robot);
    S.deadmanWasHeld = held;
    if (leaseOf(robot) === 'you' && visible()) {
      const action = held ? currentAction(robot) : zeros(robot);
      const changed = S.lastSent[robot] !== JSON.stringify([held, action]);
      const seq = sendTeleop(robot, held, action);
      if (seq !== null && changed && held && keydownAt !== undefined) {
        S.pendingLatency.push({ robot, seq, t: keydownAt });
      }
    }
    renderCommand();
  }

  function onDeadmanPressed(robot) {
    const lease = leaseOf(robot);
    if (lease === 'free') {
      takeLease(robot);
    } else if (lease === 'other') {
      // Another page drives: send the command once so the console says why it is refused.
      sendTeleop(robot, true, currentAction(robot));
      addNotice('warn', `${robot}: another page holds control; you are viewing`);
    }
  }

  function onApplied(msg) {
    const now = performance.now();
    const keep = [];
    for (const p of S.pendingLatency) {
      if (p.robot === msg.robot && msg.seq >= p.seq) stats.latencies_ms.push(now - p.t);
      else if (now - p.t < LATENCY_PENDING_MS) keep.push(p);
    }
    S.pendingLatency = keep;
    if (stats.latencies_ms.length > 10000) stats.latencies_ms.splice(0, 5000);
  }

  // ------------------------------------------------------------------ keyboard
  function handledKey(code) {
    return DEADMAN_KEYS.has(code) || code in MOTION_KEYS || code in GRIPPER_KEYS || code === ESTOP_KEY;
  }

  function typingTarget(ev) {
    const t = ev.target;
    return t && (t.tagName === 'TEXTAREA' || (t.tagName === 'INPUT' && t.type !== 'range'));
  }

  function onKeyDown(ev) {
    if (typingTarget(ev) || !handledKey(ev.code)) return;
    ev.preventDefault(); // Space must not scroll or press the focused button
    if (ev.code === ESTOP_KEY) {
      estop();
      return;
    }
    if (ev.repeat || S.keys.has(ev.code)) return;
    S.keys.add(ev.code);
    inputChanged(performance.now());
  }

  function onKeyUp(ev) {
    if (!handledKey(ev.code)) return;
    ev.preventDefault();
    if (!S.keys.delete(ev.code)) return;
    inputChanged();
  }

  // A window that loses focus never sees the keyup: forget every held key (stops driving).
  function onBlur() {
    if (S.keys.size === 0) return;
    S.keys.clear();
    inputChanged();
  }

  // ------------------------------------------------------------------ gamepad
  function deadzone(v) {
    const a = Math.abs(v);
    return a < DEADZONE ? 0 : (Math.sign(v) * (a - DEADZONE)) / (1 - DEADZONE);
  }

  function pressed(button) {
    return !!button && (button.pressed || button.value > 0.5);
  }

  function firstPad() {
    if (!navigator.getGamepads) return null;
    for (const pad of navigator.getGamepads()) if (pad && pad.connected) return pad;
    return null;
  }

  // Read the pad into S.pad; labels fire on press edges; the dead-man and the stick act like keys.
  function pollGamepad() {
    const pad = firstPad();
    if (!pad) {
      if (S.pad.connected) {
        S.pad = { connected: false, deadman: false, action: null, buttons: {} };
        inputChanged();
      }
      return;
    }
    const ax = (i) => deadzone(pad.axes[i] || 0);
    const b = (i) => pressed(pad.buttons[i]);
    const action = [
      -ax(1), // left stick up = +x (forward)
      -ax(0), // left stick left = +y
      -ax(3), // right stick up = +z
      0, 0,
      -ax(2), // right stick left = +yaw (7-dim only)
      b(PAD.close) ? 1 : b(PAD.open) ? -1 : 0,
    ];
    const deadman = b(PAD.deadman);
    const before = JSON.stringify([S.pad.deadman, S.pad.action]);
    const edges = {};
    for (const name of ['success', 'failure', 'discard']) {
      const now = b(PAD[name]);
      edges[name] = now && !S.pad.buttons[name];
      S.pad.buttons[name] = now;
    }
    S.pad.connected = true;
    S.pad.deadman = deadman;
    S.pad.action = action;
    S.pad.id = pad.id;
    for (const name of Object.keys(edges)) if (edges[name]) sendLabel(name);
    if (JSON.stringify([deadman, action]) !== before) inputChanged();
  }

  // ------------------------------------------------------------------ buttons
  function selectedCommand(msg) {
    if (!S.selected) return addNotice('warn', 'no robot yet');
    return send({ ...msg, robot: S.selected });
  }

  function sendLabel(label) {
    selectedCommand({ type: 'label', label });
  }

  function estop() {
    if (!send({ type: 'estop' })) addNotice('error', 'E-STOP not sent: disconnected. Use the robot\'s own stop!');
  }

  // window.confirm blocks this page's timers, heartbeat included: a person reading the question for more
  // than max_silence_s would lose the lease to the silence rule, and clearing needs the lease. So the
  // page hands its leases back before asking and takes them again after (refused if another page took one).
  function clearEstop() {
    const held = S.robots.filter((robot) => leaseOf(robot) === 'you');
    held.forEach(releaseLease);
    const ok = window.confirm(
      'Clear the e-stop on every robot?\n\nOnly when the robot and its workspace are safe. ' +
      'The robots stay disarmed until you arm them.');
    held.forEach(takeLease);
    if (ok) send({ type: 'clear_estop', confirm: true });
  }

  function bindButtons() {
    const click = (id, fn) => $(id).addEventListener('click', (ev) => {
      ev.currentTarget.blur(); // Space is the dead-man: it must not press the last clicked button
      fn();
    });
    click('estop', estop);
    click('clear-estop', clearEstop);
    click('take', () => takeLease(S.selected));
    click('release', () => releaseLease(S.selected));
    click('label-success', () => sendLabel('success'));
    click('label-failure', () => sendLabel('failure'));
    click('label-discard', () => sendLabel('discard'));
    click('reset', () => selectedCommand({ type: 'reset' }));
    click('arm', () => selectedCommand({ type: 'arm', on: true }));
    click('disarm', () => selectedCommand({ type: 'arm', on: false }));
    $('speed').addEventListener('input', () => { $('speed-text').textContent = speed().toFixed(2); });
  }

  // ------------------------------------------------------------------ camera frames
  // Binary frame: 1 byte n, robot (n bytes), 1 byte m, camera (m bytes), uint32 BE seq, JPEG.
  function parseFrame(buf) {
    const bytes = new Uint8Array(buf);
    const dec = new TextDecoder();
    const n = bytes[0];
    const robot = dec.decode(bytes.subarray(1, 1 + n));
    const m = bytes[1 + n];
    const camera = dec.decode(bytes.subarray(2 + n, 2 + n + m));
    const at = 2 + n + m;
    const seq = new DataView(buf, at, 4).getUint32(0, false);
    return { robot, camera, seq, jpeg: bytes.subarray(at + 4) };
  }

  function onFrame(buf) {
    const f = parseFrame(buf);
    const key = `${f.robot}/${f.camera}`;
    stats.frames[key] = (stats.frames[key] || 0) + 1;
    if (f.robot !== S.selected) return; // counted, not decoded
    showFrame(key, { blob: new Blob([f.jpeg], { type: 'image/jpeg' }), seq: f.seq });
  }

  // One decode per camera at a time; frames arriving meanwhile replace each other (never fall behind).
  function showFrame(key, frame) {
    if (S.decoding[key]) {
      S.latestBlob[key] = frame;
      return;
    }
    S.decoding[key] = true;
    decodeAndDraw(key, frame).catch(() => {}).finally(() => {
      S.decoding[key] = false;
      const next = S.latestBlob[key];
      if (next) {
        delete S.latestBlob[key];
        showFrame(key, next);
      }
    });
  }

  function cameraCanvas(key) {
    return document.querySelector(`canvas[data-camera="${CSS.escape(key)}"]`);
  }

  async function decodeAndDraw(key, frame) {
    const image = await decodeImage(frame.blob);
    const canvas = cameraCanvas(key);
    if (canvas) {
      if (canvas.width !== image.width || canvas.height !== image.height) {
        canvas.width = image.width;
        canvas.height = image.height;
      }
      canvas.getContext('2d').drawImage(image, 0, 0);
      canvas.dataset.seq = String(frame.seq);
      stats.drawn[key] = (stats.drawn[key] || 0) + 1;
    }
    if (image.close) image.close();
  }

  // An ImageBitmap, or (without createImageBitmap) an <img> from an object URL that is revoked at once.
  function decodeImage(blob) {
    if (window.createImageBitmap) return createImageBitmap(blob);
    return new Promise((resolve, reject) => {
      const url = URL.createObjectURL(blob);
      const img = new Image();
      img.onload = () => { URL.revokeObjectURL(url); resolve(img); };
      img.onerror = () => { URL.revokeObjectURL(url); reject(new Error('bad frame')); };
      img.src = url;
    });
  }

  function renderCameras(view) {
    const robot = S.selected;
    const names = view ? view.cameras || [] : [];
    const shown = `${robot}|${names.join('|')}`;
    if (shown === S.camerasShown) return;
    S.camerasShown = shown;
    const box = $('cameras');
    box.replaceChildren();
    if (!names.length) {
      box.appendChild(el('p', 'muted empty', 'no camera frames yet'));
      return;
    }
    for (const name of names) {
      const key = `${robot}/${name}`;
      const fig = el('figure', 'cam');
      const canvas = el('canvas');
      canvas.dataset.camera = key;
      canvas.width = 128;
      canvas.height = 128;
      const cap = el('figcaption', '', name + ' ');
      const fps = el('span', 'fps muted', '– fps');
      fps.dataset.fpsFor = key;
      cap.appendChild(fps);
      fig.append(canvas, cap);
      box.appendChild(fig);
    }
  }

  // Every FPS_PERIOD_MS: frames per second of every camera, over that period.
  function updateFps() {
    const now = performance.now();
    const dt = (now - S.fpsAt) / 1000;
    S.fpsAt = now;
    for (const key of Object.keys(stats.frames)) {
      const n = stats.frames[key] - (S.framesAtLastFps[key] || 0);
      S.framesAtLastFps[key] = stats.frames[key];
      stats.fps[key] = dt > 0 ? n / dt : 0;
    }
    for (const span of document.querySelectorAll('span[data-fps-for]')) {
      const fps = stats.fps[span.dataset.fpsFor];
      span.textContent = fps === undefined ? '– fps' : `${fps.toFixed(1)} fps`;
    }
  }

  // ------------------------------------------------------------------ rendering: state
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function setText(id, text, cls) {
    const e = $(id);
    e.textContent = text;
    if (cls !== undefined) e.className = cls;
  }

  function fmt(x, digits = 3) {
    return x === null || x === undefined ? '–' : Number(x).toFixed(digits);
  }

  function renderTabs() {
    const nav = $('robots');
    nav.replaceChildren();
    for (const robot of S.robots) {
      const b = el('button', robot === S.selected ? 'tab active' : 'tab', robot);
      b.type = 'button';
      b.dataset.robot = robot;
      b.addEventListener('click', () => selectRobot(robot));
      nav.appendChild(b);
    }
    nav.classList.toggle('single', S.robots.length < 2);
    document.body.classList.toggle('one-robot', S.robots.length < 2);
    $('robot-name').textContent = S.selected || '';
  }

  // Switching robots stops driving the old one (its lease stays, with heartbeats).
  function selectRobot(robot) {
    if (robot === S.selected) return;
    const old = S.selected;
    if (old && leaseOf(old) === 'you') sendTeleop(old, false, zeros(old));
    S.selected = robot;
    S.camerasShown = '';
    renderTabs();
    renderState();
    renderCommand();
    renderTelemetry();
  }

  const LEASE_TEXT = { you: 'you (in control)', other: 'another page', free: 'free' };

  function renderState() {
    const anyEstop = Object.values(S.state).some((v) => v.estop);
    document.body.classList.toggle('estopped', anyEstop);
    renderEstopBanner();
    renderTabStatus();
    const view = S.state[S.selected];
    renderCameras(view);
    if (!view) return;
    const lease = leaseOf(S.selected);
    setText('lease', LEASE_TEXT[lease] || lease, `v lease-${lease}`);
    document.body.classList.toggle('has-lease', lease === 'you');
    document.body.classList.toggle('rot', actionDim(S.selected) === 7);
    setText('mode', view.mode, `mode-${view.mode}`);
    setText('armed', view.armed ? 'armed' : 'disarmed', view.armed ? 'ok' : 'warn');
    setText('estopped', view.estop ? `LATCHED: ${view.estop_reason}` : 'no', view.estop ? 'bad' : 'ok');
    setText('paused', view.paused || 'running', view.paused ? 'warn' : 'ok');
    setText('episode', String(view.episode));
    setText('step', String(view.step));
    setText('reward', fmt(view.reward));
    setText('return', fmt(view.return));
    setText('success', view.success ? 'yes' : 'no', view.success ? 'ok' : '');
    setText('tcp', view.tcp ? view.tcp.map((v) => fmt(v)).join('  ') : '–');
    renderClassifier(view);
    renderGripper(view);
    renderJoints(view.joints || []);
    renderDriving(view);
  }

  function renderTabStatus() {
    for (const b of $('robots').children) {
      const v = S.state[b.dataset.robot];
      b.classList.toggle('tab-estop', !!(v && v.estop));
      b.classList.toggle('tab-person', !!(v && v.mode === 'person'));
    }
  }

  function renderEstopBanner() {
    const latched = Object.entries(S.state).filter(([, v]) => v.estop);
    const banner = $('estop-banner');
    banner.classList.toggle('hidden', latched.length === 0);
    banner.textContent = latched.length
      ? `E-STOP LATCHED — ${latched.map(([r, v]) => `${r}: ${v.estop_reason}`).join('; ')}. ` +
        'Make the robot safe, then Clear e-stop and Arm.'
      : '';
    $('estop').textContent = latched.length ? 'E-STOP (latched)' : 'E-STOP';
  }

  function renderDriving(view) {
    const driving = view.mode === 'person' && leaseOf(S.selected) === 'you';
    const d = $('driving');
    d.textContent = driving ? 'YOU ARE DRIVING' : view.mode === 'person' ? 'a person drives' : 'not driving';
    d.className = driving ? 'driving on' : view.mode === 'person' ? 'driving other' : 'driving off';
  }

  function setMeter(id, fraction, level) {
    const meter = $(id);
    const fill = meter.querySelector('.fill');
    fill.style.width = `${Math.round(Math.max(0, Math.min(1, fraction)) * 100)}%`;
    fill.className = `fill ${level || ''}`;
  }

  function renderClassifier(view) {
    const p = view.success_probability;
    const thr = view.threshold;
    const meter = $('classifier');
    meter.classList.toggle('absent', p === null);
    setMeter('classifier', p === null ? 0 : p, p !== null && thr !== null && p >= thr ? 'ok' : '');
    const mark = meter.querySelector('.mark');
    mark.classList.toggle('hidden', thr === null);
    if (thr !== null) mark.style.left = `${(thr * 100).toFixed(1)}%`;
    $('classifier-text').textContent =
      p === null ? 'no classifier' : `${fmt(p, 2)}${thr !== null ? ` / ${fmt(thr, 2)}` : ''}`;
  }

  function renderGripper(view) {
    const g = view.gripper;
    const max = view.gripper_max;
    setMeter('gripper', g !== null && max ? g / max : 0);
    $('gripper-text').textContent = g === null ? '–' : `${fmt(g)}${max ? ` / ${fmt(max)}` : ''}`;
  }

  function proximityLevel(p) {
    if (p >= 0.95) return 'bad';
    if (p >= 0.8) return 'warn';
    return 'ok';
  }

  // One row per joint: name, position, a bar from the range's middle (0) to a limit (1).
  function renderJoints(joints) {
    const box = $('joints');
    if (box.children.length !== joints.length || !box.querySelector('.joint')) {
      box.replaceChildren();
      for (const j of joints) {
        const row = el('div', 'joint');
        row.append(el('span', 'k', j.name), el('span', 'v pos'), el('div', 'meter'), el('span', 'v lim'));
        row.children[2].appendChild(el('div', 'fill'));
        box.appendChild(row);
      }
      if (!joints.length) box.appendChild(el('p', 'muted', 'no joint state'));
    }
    joints.forEach((j, i) => {
      const row = box.children[i];
      if (!row || !row.classList.contains('joint')) return;
      row.children[1].textContent = fmt(j.pos);
      const p = j.proximity;
      const fill = row.children[2].firstChild;
      fill.style.width = p === null ? '0%' : `${Math.round(p * 100)}%`;
      fill.className = `fill ${p === null ? '' : proximityLevel(p)}`;
      row.children[3].textContent = j.low === null ? '' : `[${fmt(j.low, 2)}, ${fmt(j.high, 2)}]`;
      row.classList.toggle('near-limit', p !== null && p >= 0.8);
    });
  }

  // The command the page would send now, as small bars.
  function renderCommand() {
    const robot = S.selected;
    if (!robot) return;
    const held = deadmanHeld();
    const action = currentAction(robot);
    const names = actionDim(robot) === 7 ? ['x', 'y', 'z', 'rx', 'ry', 'rz', 'g'] : ['x', 'y', 'z', 'g'];
    const box = $('command');
    if (box.children.length !== names.length) {
      box.replaceChildren(...names.map((n) => {
        const c = el('span', 'axis');
        c.append(el('b', '', n), el('i'));
        return c;
      }));
    }
    names.forEach((_, i) => {
      const v = action[i];
      const c = box.children[i];
      c.lastChild.textContent = v > 0 ? '+' : v < 0 ? '−' : '·';
      c.classList.toggle('on', held && v !== 0);
    });
    box.classList.toggle('held', held);
    const pad = S.pad;
    setText('gamepad', pad.connected ? `${pad.id || 'gamepad'}${pad.deadman ? ' · LB held' : ''}` : 'none',
      pad.connected ? 'v' : 'v muted');
  }

  function renderConnection() {
    const c = $('connection');
    if (S.connected) {
      const stale = performance.now() - S.stateAt > 1000;
      c.textContent = stale ? 'connected · no state for >1 s' :
        `connected${stats.rtt_ms !== null ? ` · ${stats.rtt_ms.toFixed(0)} ms` : ''}`;
      c.className = stale ? 'conn warn' : 'conn ok';
    } else {
      const wait = S.reconnectAt ? Math.max(0, (S.reconnectAt - performance.now()) / 1000) : 0;
      c.textContent = S.reconnectAt ? `DISCONNECTED — retrying in ${wait.toFixed(1)} s` : 'connecting…';
      c.className = 'conn bad';
    }
    document.body.classList.toggle('disconnected', !S.connected);
  }

  // ------------------------------------------------------------------ notices
  function addNotice(level, text) {
    const last = S.notices[0];
    const now = new Date();
    stats.notices.push({ level, text });
    if (stats.notices.length > 500) stats.notices.splice(0, 250);
    if (last && last.text === text && now - last.at < 5000) { // repeated: count it
      last.count += 1;
      last.at = now;
      last.li.querySelector('.count').textContent = ` ×${last.count}`;
      return;
    }
    const li = el('li', `notice ${level}`);
    li.append(el('time', '', now.toLocaleTimeString()), el('span', 'text', text), el('span', 'count'));
    $('notices').prepend(li);
    S.notices.unshift({ text, at: now, count: 1, li });
    while (S.notices.length > MAX_NOTICES) S.notices.pop().li.remove();
  }

  // ------------------------------------------------------------------ rendering: telemetry
  function renderTelemetry() {
    const t = S.telemetry;
    if (!t) return;
    $('env-step').textContent = `env step ${t.env_step}`;
    const rates = interventionRate(t.interventions || []);
    const evals = t.evals || [];
    plot($('plot-rates'), [
      { label: 'eval success', color: '#4cc38a', points: evals.map((e) => [e[0], e[1]]), dots: true },
      { label: `intervention rate (${INTERVENTION_WINDOW} ep)`, color: '#f0a83a', points: rates },
    ], { ymin: 0, ymax: 1 });
    plot($('plot-return'), [
      { label: 'eval mean return', color: '#6aa7ff', points: evals.map((e) => [e[0], e[2]]), dots: true },
    ], {});
    plot($('plot-takeovers'), [
      { label: 'take-overs', color: '#f0a83a', points: (t.interventions || []).map((r) => [r[0], r[1]]), dots: true, noLine: true },
    ], { ymin: 0 });
    plot($('plot-updates'), [
      { label: 'updates/s', color: '#b48cff', points: (t.updates || []).map((u) => [u[0], u[1]]) },
    ], { ymin: 0 });
    renderEpisodes(t.episodes || []);
  }

  // Rolling fraction of steps under intervention over the last INTERVENTION_WINDOW online episodes.
  function interventionRate(rows) {
    const out = [];
    for (let i = 0; i < rows.length; i++) {
      let steps = 0;
      let length = 0;
      for (let j = Math.max(0, i - INTERVENTION_WINDOW + 1); j <= i; j++) {
        steps += rows[j][2];
        length += rows[j][3];
      }
      out.push([rows[i][0], length > 0 ? steps / length : 0]);
    }
    return out;
  }

  function renderEpisodes(rows) {
    const body = $('episodes').querySelector('tbody');
    body.replaceChildren();
    for (const r of rows.slice(-20).reverse()) {
      const tr = el('tr', r.label ? `label-${r.label}` : '');
      const cells = [r.episode, r.robot, r.source, r.length, fmt(r.return, 2), r.success ? 'yes' : 'no',
        r.interventions, r.intervention_steps, r.safety_steps ?? 0, r.label || ''];
      cells.forEach((c, i) => tr.appendChild(el('td', i === 1 ? 'col-robot' : '', String(c))));
      body.appendChild(tr);
    }
  }

  // ------------------------------------------------------------------ plotting
  // A small line/dot plot: series [{label, color, points: [[x, y]], dots, noLine}], opts {ymin, ymax}.
  function plot(canvas, series, opts) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (!w || !h) return;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const pad = { l: 44, r: 8, t: 16, b: 18 };
    const all = series.flatMap((s) => s.points);
    ctx.font = '10px system-ui, sans-serif';
    ctx.fillStyle = '#8a94a3';
    if (!all.length) {
      ctx.fillText('no data yet', pad.l + 4, h / 2);
      return;
    }
    const xs = all.map((p) => p[0]);
    const ys = all.map((p) => p[1]);
    let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
    let y0 = opts.ymin !== undefined ? opts.ymin : Math.min(...ys);
    let y1 = opts.ymax !== undefined ? opts.ymax : Math.max(...ys);
    if (opts.ymax === undefined) y1 = Math.max(y1, y0 + 1e-9);
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    if (y1 === y0) { y0 -= 1; y1 += 1; }
    if (opts.ymax === undefined) y1 += (y1 - y0) * 0.05;
    const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (w - pad.l - pad.r);
    const Y = (y) => h - pad.b - ((y - y0) / (y1 - y0)) * (h - pad.t - pad.b);
    drawAxes(ctx, { x0, x1, y0, y1, X, Y, w, h, pad });
    for (const s of series) drawSeries(ctx, s, X, Y);
    drawLegend(ctx, series, pad.l + 4, 11);
  }

  // About n round tick values in [lo, hi].
  function niceTicks(lo, hi, n) {
    const step0 = (hi - lo) / n;
    if (!(step0 > 0) || !Number.isFinite(step0)) return [];
    const mag = 10 ** Math.floor(Math.log10(step0));
    // the 1-2-5 step nearest (in ratio) to the plain one
    const step = [1, 2, 5, 10].map((m) => m * mag)
      .reduce((a, b) => (Math.abs(Math.log(b / step0)) < Math.abs(Math.log(a / step0)) ? b : a));
    const ticks = [];
    const first = Math.ceil(lo / step - 1e-9);
    for (let k = first; k * step <= hi + step * 1e-9 && ticks.length < 50; k++) ticks.push(k * step);
    return ticks;
  }

  function tickLabel(v) {
    const a = Math.abs(v);
    if (a >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
    if (a >= 1e3) return `${(v / 1e3).toFixed(a >= 1e4 ? 0 : 1)}k`;
    return a >= 10 || v === 0 ? v.toFixed(0) : v.toFixed(a >= 1 ? 1 : 2);
  }

  function drawAxes(ctx, a) {
    ctx.strokeStyle = '#2b323c';
    ctx.fillStyle = '#8a94a3';
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    for (const v of niceTicks(a.y0, a.y1, 4)) {
      const y = Math.round(a.Y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(a.pad.l, y); ctx.lineTo(a.w - a.pad.r, y); ctx.stroke();
      ctx.fillText(tickLabel(v), a.pad.l - 4, y + 3);
    }
    ctx.textAlign = 'center';
    for (const v of niceTicks(a.x0, a.x1, 5)) ctx.fillText(tickLabel(v), a.X(v), a.h - 5);
    ctx.textAlign = 'left';
  }

  function drawSeries(ctx, s, X, Y) {
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.lineWidth = 1.5;
    if (!s.noLine && s.points.length > 1) {
      ctx.beginPath();
      s.points.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
      ctx.stroke();
    }
    if (s.dots || s.points.length === 1) {
      for (const [x, y] of s.points) {
        ctx.beginPath(); ctx.arc(X(x), Y(y), 2.5, 0, 2 * Math.PI); ctx.fill();
      }
    }
  }

  function drawLegend(ctx, series, x, y) {
    for (const s of series) {
      ctx.fillStyle = s.color;
      ctx.fillRect(x, y - 7, 8, 8);
      ctx.fillStyle = '#c9d1db';
      ctx.fillText(s.label, x + 11, y);
      x += 18 + ctx.measureText(s.label).width;
    }
  }

  // ------------------------------------------------------------------ page lifecycle
  function onHidden() {
    if (document.visibilityState === 'hidden') {
      S.keys.clear();
      S.deadmanWasHeld = false;
      releaseAll(); // a hidden page's timers are throttled: give control back now, not on silence
    }
  }

  function start() {
    bindButtons();
    window.addEventListener('keydown', onKeyDown);
    window.addEventListener('keyup', onKeyUp);
    window.addEventListener('blur', onBlur);
    document.addEventListener('visibilitychange', onHidden);
    window.addEventListener('pagehide', releaseAll);
    window.addEventListener('beforeunload', releaseAll);
    window.addEventListener('resize', renderTelemetry);
    setInterval(teleopTick, TELEOP_PERIOD_MS);
    setInterval(() => { updateFps(); renderConnection(); }, FPS_PERIOD_MS);
    setInterval(() => send({ type: 'ping', t: performance.now() }), PING_PERIOD_MS);
    renderConnection();
    connect();
  }

  start();
})();
