// The settings page. Every section and field is drawn from the daemon's own config
// model (GET /api/settings: its JSON schema, the help written above each field in
// config.py, what saving each one interrupts); a section is saved with PUT
// /api/settings and the daemon's own one-line errors show beside their fields.
// Before saving, the page says what the change will interrupt and asks again.

import { button } from './dom.js';

const $ = (id) => document.getElementById(id);
const status = $('settings-status');
let current = null; // the last answer of GET /api/settings
// What saving a field interrupts (settings/impact.py), least first.
const IMPACTS = ['nothing', 'camera', 'restart'];
const BADGES = { nothing: 'applies at once', camera: 'restarts the camera', restart: 'restarts the daemon' };

function say(text) {
  status.textContent = text;
}

function titleOf(key, property) {
  return property.title || key.replaceAll('_', ' ');
}

function sectionTitle(name) {
  const words = name.replaceAll('_', ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}

// A property of the schema as the page edits it.
function kindOf(schema, property) {
  let node = property;
  let nullable = false;
  if (node.anyOf) {
    const branches = node.anyOf.filter((b) => b.type !== 'null');
    nullable = branches.length < node.anyOf.length;
    node = branches.length === 1 ? branches[0] : { json: true };
  }
  if (node.$ref) return { kind: 'json', nullable };
  if (node.json) return { kind: 'json', nullable };
  if (node.enum) return { kind: 'enum', choices: node.enum, nullable };
  if (node.type === 'boolean') return { kind: 'boolean', nullable };
  if (node.type === 'integer' || node.type === 'number') {
    return { kind: node.type, min: node.minimum ?? node.exclusiveMinimum, max: node.maximum ?? node.exclusiveMaximum, nullable };
  }
  if (node.type === 'string') return { kind: 'string', nullable };
  if (node.type === 'array' && node.items && node.items.type === 'string') return { kind: 'list', nullable };
  return { kind: 'json', nullable };
}

function valueOf(section, key) {
  const written = current.written[section] || {};
  if (key in written) return written[key];
  return (current.running[section] || {})[key];
}

function isSecret(value) {
  return value === current.form.unchanged;
}

function shownText(kind, value) {
  if (value === null || value === undefined) return '';
  if (kind.kind === 'list') return value.join(', ');
  if (kind.kind === 'json') return JSON.stringify(value, null, 1);
  return String(value);
}

function makeInput(id, kind, value) {
  let input;
  if (kind.kind === 'boolean') {
    input = document.createElement('input');
    input.type = 'checkbox';
    input.checked = Boolean(value);
  } else if (kind.kind === 'enum') {
    input = document.createElement('select');
    for (const choice of kind.choices) {
      const option = document.createElement('option');
      option.value = String(choice);
      option.textContent = String(choice);
      input.append(option);
    }
    if (kind.nullable) input.prepend(new Option('(default)', ''));
    input.value = value === null || value === undefined ? '' : String(value);
  } else if (kind.kind === 'json') {
    input = document.createElement('textarea');
    input.rows = 3;
    input.value = shownText(kind, value);
  } else {
    input = document.createElement('input');
    if (isSecret(value)) {
      input.type = 'password';
      input.placeholder = '(set; unchanged)';
      input.autocomplete = 'new-password';
    } else {
      input.type = kind.kind === 'integer' || kind.kind === 'number' ? 'number' : 'text';
      if (kind.kind === 'integer') input.step = '1';
      if (kind.kind === 'number') input.step = 'any';
      if (kind.min !== undefined) input.min = String(kind.min);
      if (kind.max !== undefined) input.max = String(kind.max);
      input.value = shownText(kind, value);
    }
  }
  input.id = id;
  return input;
}

// What the input holds, as the model wants it; throws a message for the field.
function readInput(input, kind, original) {
  if (kind.kind === 'boolean') return input.checked;
  const text = input.value.trim();
  if (isSecret(original) && text === '') return original;
  if (text === '') {
    if (kind.kind === 'list') return [];
    return kind.nullable || kind.kind === 'string' ? null : undefined;
  }
  if (kind.kind === 'integer' || kind.kind === 'number') {
    const number = Number(text);
    if (!Number.isFinite(number)) throw new Error('a number');
    return number;
  }
  if (kind.kind === 'enum') {
    const choice = kind.choices.find((c) => String(c) === text);
    return choice === undefined ? text : choice;
  }
  if (kind.kind === 'list') return text.split(',').map((part) => part.trim()).filter(Boolean);
  if (kind.kind === 'json') {
    try {
      return JSON.parse(text);
    } catch {
      throw new Error('not valid JSON');
    }
  }
  return input.value;
}

function same(a, b) {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

// --- motion zones, drawn on the live picture ------------------------------------

class ZoneEditor {
  constructor(container, zones, onChange) {
    this.root = document.getElementById('zone-editor').content.firstElementChild.cloneNode(true);
    container.append(this.root);
    this.picture = this.root.querySelector('.zone-picture');
    this.canvas = this.root.querySelector('.zone-canvas');
    this.list = this.root.querySelector('.zone-list');
    this.zones = zones.map((z) => ({ ...z }));
    this.onChange = onChange;
    this.drawing = null;
    this.picture.addEventListener('load', () => this.draw());
    this.root.querySelector('.zone-refresh').addEventListener('click', () => this.refresh());
    this.canvas.addEventListener('pointerdown', (event) => this.start(event));
    this.canvas.addEventListener('pointermove', (event) => this.move(event));
    this.canvas.addEventListener('pointerup', (event) => this.end(event));
    this.canvas.addEventListener('pointercancel', () => { this.drawing = null; this.draw(); });
    this.refresh();
    this.showList();
  }

  refresh() {
    this.picture.src = `/snapshot.jpg?at=${Date.now()}`;
  }

  point(event) {
    const box = this.canvas.getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return { x: clamp((event.clientX - box.left) / box.width), y: clamp((event.clientY - box.top) / box.height) };
  }

  start(event) {
    this.canvas.setPointerCapture(event.pointerId);
    this.drawing = { from: this.point(event), to: this.point(event) };
  }

  move(event) {
    if (!this.drawing) return;
    this.drawing.to = this.point(event);
    this.draw();
  }

  end(event) {
    if (!this.drawing) return;
    this.drawing.to = this.point(event);
    const { from, to } = this.drawing;
    this.drawing = null;
    const round = (v) => Math.round(v * 1000) / 1000;
    const zone = {
      x: round(Math.min(from.x, to.x)), y: round(Math.min(from.y, to.y)),
      width: round(Math.abs(to.x - from.x)), height: round(Math.abs(to.y - from.y)),
    };
    if (zone.width >= 0.01 && zone.height >= 0.01) {
      this.zones.push(zone);
      this.changed();
    }
    this.draw();
  }

  changed() {
    this.showList();
    this.draw();
    this.onChange(this.zones);
  }

  showList() {
    this.list.replaceChildren(...this.zones.map((zone, index) => {
      const item = document.createElement('li');
      const pct = (v) => `${Math.round(v * 100)} %`;
      item.textContent = `Zone ${index + 1}: from ${pct(zone.x)}, ${pct(zone.y)}, ${pct(zone.width)} × ${pct(zone.height)} `;
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.textContent = 'Remove';
      remove.addEventListener('click', () => {
        this.zones.splice(index, 1);
        this.changed();
      });
      item.append(remove);
      return item;
    }));
  }

  draw() {
    const { width, height } = this.picture.getBoundingClientRect();
    this.canvas.width = Math.max(1, Math.round(width));
    this.canvas.height = Math.max(1, Math.round(height));
    const context = this.canvas.getContext('2d');
    context.clearRect(0, 0, this.canvas.width, this.canvas.height);
    const rect = (z, fill) => {
      context.fillStyle = fill;
      context.fillRect(z.x * this.canvas.width, z.y * this.canvas.height, z.width * this.canvas.width, z.height * this.canvas.height);
    };
    for (const zone of this.zones) rect(zone, 'rgba(220, 40, 40, 0.4)');
    if (this.drawing) {
      const { from, to } = this.drawing;
      rect({ x: Math.min(from.x, to.x), y: Math.min(from.y, to.y), width: Math.abs(to.x - from.x), height: Math.abs(to.y - from.y) }, 'rgba(240, 200, 40, 0.4)');
    }
  }
}

// --- sections -------------------------------------------------------------------

function renderSection(name) {
  const { schema, help, impact } = current.form;
  const properties = schema.properties[name];
  const model = properties.$ref ? schema.$defs[properties.$ref.split('/').pop()] : properties;
  const section = document.createElement('section');
  section.className = 'settings-section';
  section.id = `section-${name}`;
  const heading = document.createElement('h2');
  heading.textContent = sectionTitle(name);
  const form = document.createElement('form');
  form.noValidate = true;
  const fields = [];
  for (const [key, property] of Object.entries(model.properties || {})) {
    const dotted = `${name}.${key}`;
    const kind = kindOf(schema, property);
    const original = valueOf(name, key);
    const row = document.createElement('div');
    row.className = 'field';
    row.dataset.key = dotted;
    const id = `field-${name}-${key}`;
    const label = document.createElement('label');
    label.htmlFor = id;
    label.textContent = titleOf(key, property);
    const input = makeInput(id, kind, original);
    const field = { dotted, kind, original, input, row, value: undefined };
    row.append(label, input);
    if (dotted === 'motion.masks') {
      input.hidden = true;
      field.editor = new ZoneEditor(row, original || [], (zones) => {
        input.value = JSON.stringify(zones, null, 1);
      });
    }
    const notes = document.createElement('small');
    notes.className = 'help';
    const parts = [];
    if (help[dotted]) parts.push(help[dotted]);
    if (property.default !== undefined && property.default !== null && typeof property.default !== 'object') {
      parts.push(`Default: ${property.default}.`);
    }
    if (dotted in current.overridden) parts.push(`Set on the command line to ${JSON.stringify(current.overridden[dotted])} while it runs.`);
    notes.textContent = parts.join(' ');
    const badge = document.createElement('span');
    badge.className = `impact impact-${impact[dotted]}`;
    badge.textContent = BADGES[impact[dotted]];
    const error = document.createElement('p');
    error.className = 'field-error';
    error.setAttribute('role', 'alert');
    error.hidden = true;
    row.append(badge, notes, error);
    form.append(row);
    fields.push(field);
  }
  const save = document.createElement('button');
  save.type = 'submit';
  save.className = 'save';
  save.textContent = `Save ${sectionTitle(name).toLowerCase()}`;
  const confirmBox = document.createElement('div');
  confirmBox.className = 'confirm';
  confirmBox.hidden = true;
  form.append(save, confirmBox);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    askToSave(name, fields, confirmBox);
  });
  section.append(heading, form);
  return section;
}

function clearErrors(fields) {
  for (const field of fields) {
    const error = field.row.querySelector('.field-error');
    error.hidden = true;
    field.input.removeAttribute('aria-invalid');
  }
}

function showError(fields, dotted, message) {
  const field = fields.find((f) => f.dotted === dotted);
  if (!field) return false;
  const error = field.row.querySelector('.field-error');
  error.textContent = message;
  error.hidden = false;
  field.input.setAttribute('aria-invalid', 'true');
  return true;
}

// The section's changed fields, or null after showing the page's own errors.
function changesOf(fields) {
  const changes = {};
  let ok = true;
  for (const field of fields) {
    let value;
    try {
      value = readInput(field.input, field.kind, field.original);
    } catch (problem) {
      showError(fields, field.dotted, problem.message);
      ok = false;
      continue;
    }
    if (value === undefined) continue;
    if (!same(value, field.original)) changes[field.dotted] = value;
  }
  return ok ? changes : null;
}

function askToSave(name, fields, confirmBox) {
  clearErrors(fields);
  const changes = changesOf(fields);
  if (changes === null) return;
  const keys = Object.keys(changes);
  if (!keys.length) {
    say('Nothing changed.');
    return;
  }
  const worst = keys.map((k) => current.form.impact[k])
    .reduce((a, b) => (IMPACTS.indexOf(b) > IMPACTS.indexOf(a) ? b : a), 'nothing');
  const text = document.createElement('p');
  text.textContent = `Saving ${keys.join(', ')} ${current.form.says[worst]}.`;
  const go = document.createElement('button');
  go.type = 'button';
  go.className = 'confirm-save';
  go.textContent = worst === 'nothing' ? 'Save' : 'Save and restart';
  const cancel = document.createElement('button');
  cancel.type = 'button';
  cancel.textContent = 'Cancel';
  cancel.addEventListener('click', () => { confirmBox.hidden = true; });
  go.addEventListener('click', () => {
    confirmBox.hidden = true;
    save(fields, changes);
  });
  confirmBox.replaceChildren(text, go, cancel);
  confirmBox.hidden = false;
}

async function save(fields, changes) {
  say('Saving…');
  let response;
  try {
    response = await fetch('/api/settings', {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ changes }),
    });
  } catch (error) {
    say(`The camera did not answer: ${error.message}`);
    return;
  }
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const errors = answer.errors || {};
    const general = [];
    for (const [key, message] of Object.entries(errors)) {
      if (!showError(fields, key, message)) general.push(`${key}: ${message}`);
    }
    say(general.length ? `Not saved: ${general.join('; ')}` : (answer.error || 'Not saved: see the fields marked.'));
    return;
  }
  let message;
  if (answer.impact === 'restart') {
    say(`Saved ${answer.saved.join(', ')}. The daemon is restarting…`);
    const after = await waitForRestart(current.run);
    if (!after) {
      say(`Saved ${answer.saved.join(', ')}, but the daemon did not come back yet: reload the page in a moment.`);
      return;
    }
    message = after.rolled_back
      ? `Not applied: ${after.rolled_back}.`
      : `Saved ${answer.saved.join(', ')}; the daemon restarted.`;
  } else if (answer.impact === 'camera') {
    message = `Saved ${answer.saved.join(', ')}; the camera restarted with them.`;
  } else {
    message = answer.saved.length ? `Saved ${answer.saved.join(', ')}; applied.` : 'Nothing changed.';
  }
  // The form drawn again from what the daemon now runs, then the word that it is done.
  await load();
  say(message);
}

// The daemon answers, then restarts: wait for another run of it to answer (the old
// one keeps answering while it stops). Its answer, or null after half a minute.
async function waitForRestart(before) {
  for (let attempt = 0; attempt < 60; attempt += 1) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    try {
      const response = await fetch('/api/settings', { cache: 'no-store' });
      if (response.ok) {
        const answer = await response.json();
        if (answer.run !== before) return answer;
      }
    } catch { /* restarting */ }
  }
  return null;
}

// --- users and tokens -----------------------------------------------------------

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  let answer = {};
  try { answer = text ? JSON.parse(text) : {}; } catch { answer = { error: text.trim() }; }
  if (!response.ok) throw new Error(answer.error || `refused (${response.status})`);
  return answer;
}

function formError(form, message) {
  const box = form.querySelector('.field-error');
  box.textContent = message || '';
  box.hidden = !message;
}

async function showUsers() {
  const users = await api('GET', '/api/users');
  $('user-table').tBodies[0].replaceChildren(...users.map((user) => {
    const row = document.createElement('tr');
    row.dataset.user = user.name;
    const name = document.createElement('td');
    name.textContent = user.name;
    const roleCell = document.createElement('td');
    const role = document.createElement('select');
    role.append(new Option('viewer', 'viewer'), new Option('admin', 'admin'));
    role.value = user.role;
    role.addEventListener('change', async () => {
      try {
        await api('PATCH', `/api/users/${encodeURIComponent(user.name)}`, { role: role.value });
        say(`${user.name} is now ${role.value}.`);
      } catch (error) {
        say(error.message);
      }
      await showUsers();
    });
    roleCell.append(role);
    const actions = document.createElement('td');
    actions.append(
      button('Reset password', async () => {
        const password = prompt(`New password for ${user.name} (8 characters or more)`);
        if (!password) return;
        try {
          await api('PATCH', `/api/users/${encodeURIComponent(user.name)}`, { password });
          say(`Password of ${user.name} reset.`);
        } catch (error) {
          say(error.message);
        }
      }),
      button('Remove', async () => {
        try {
          await api('DELETE', `/api/users/${encodeURIComponent(user.name)}`);
          say(`${user.name} removed.`);
        } catch (error) {
          say(error.message);
        }
        await showUsers();
      }),
    );
    row.append(name, roleCell, actions);
    return row;
  }));
}

async function showTokens() {
  const tokens = await api('GET', '/api/tokens');
  $('token-table').tBodies[0].replaceChildren(...tokens.map((token) => {
    const row = document.createElement('tr');
    row.dataset.token = token.name;
    const cells = [token.name, token.role, token.expires ? new Date(token.expires * 1000).toLocaleDateString() : 'never'];
    for (const text of cells) {
      const cell = document.createElement('td');
      cell.textContent = text + (token.expired ? ' (expired)' : '');
      row.append(cell);
    }
    const actions = document.createElement('td');
    actions.append(button('Revoke', async () => {
      try {
        await api('DELETE', `/api/tokens/${encodeURIComponent(token.id)}`);
        say(`Token ${token.name} revoked.`);
      } catch (error) {
        say(error.message);
      }
      await showTokens();
    }));
    row.append(actions);
    return row;
  }));
}

$('add-user').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = event.target;
  formError(form, '');
  try {
    await api('POST', '/api/users', { name: form.name.value.trim(), role: form.role.value, password: form.password.value });
    say(`User ${form.name.value.trim()} added.`);
    form.reset();
  } catch (error) {
    formError(form, error.message);
  }
  await showUsers();
});

$('create-token').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = event.target;
  formError(form, '');
  const days = form.days.value ? Number(form.days.value) : null;
  try {
    const made = await api('POST', '/api/tokens', { name: form.name.value.trim(), role: form.role.value, lifetime_days: days });
    $('new-token').querySelector('code').textContent = made.token;
    $('new-token').hidden = false;
    say(`Token ${made.name} created.`);
    form.reset();
  } catch (error) {
    formError(form, error.message);
  }
  await showTokens();
});

// --- the page -------------------------------------------------------------------

async function load() {
  const response = await fetch('/api/settings', { cache: 'no-store' });
  if (response.status === 401) {
    location.assign('/login?next=/settings');
    return;
  }
  if (!response.ok) {
    say(`Cannot read the settings: ${(await response.text()).trim()}`);
    return;
  }
  current = await response.json();
  $('settings-file').textContent = `Saved in ${current.file}`;
  const sections = current.form.sections.map(renderSection);
  $('settings-sections').replaceChildren($('phone'), ...sections, $('accounts'), $('software-update'));
  const extra = { phone: 'Open on a phone', accounts: 'Users and tokens', 'software-update': 'Software update' };
  const names = ['phone', ...current.form.sections, 'accounts', 'software-update'];
  $('settings-nav').replaceChildren(...names.map((name) => {
    const link = document.createElement('a');
    link.href = name in extra ? `#${name}` : `#section-${name}`;
    link.textContent = extra[name] || sectionTitle(name);
    return link;
  }));
  document.body.dataset.loaded = String(Date.now());
}

async function showPhoneLink() {
  const link = await api('GET', '/api/settings/phone');
  $('phone-qr').src = `data:image/svg+xml,${encodeURIComponent(link.qr_svg)}`;
  $('phone-url').href = link.url;
  $('phone-url').textContent = link.url;
  $('phone-fingerprint').textContent = link.fingerprint || '(a certificate of your own: no fingerprint to compare)';
}

await load();
await Promise.all([showUsers(), showTokens(), showPhoneLink()]).catch((error) => say(error.message));
window.peercamSettings = { reload: load };
