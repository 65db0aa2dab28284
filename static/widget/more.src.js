/*! Consent widget, second part: docs/widget.md */
// What only comes after the banner, loaded by consent.js (static/widget/consent.src.js) the
// first time it is needed: sending choices to the server, the check with the server (once
// per browser session, and back from the preference center), the preferences dialog and
// deleting a withdrawn category's cookies. consent.js hands this function X, the part of
// its internals this one uses. C, where passed, is the site's details in the page's
// language (category descriptions, services and their cookies, the dialog's texts), or
// null when they could not be fetched (offline: the dialog still works, plainer).
// Classes only, no inline style: it runs under a strict CSP.
window.__consentPart(X => {
  'use strict';
  const W = window, D = document, noop = () => {};
  const {h, has, policy, note, ageQ, refocus, api, base, site, queue, save} = X;
  const STYLE = '@@STYLE@@';
  // The dialog's styles, like the banner's, through the CSSOM; browsers without
  // constructable stylesheets already have all of consent.css by a <link>.
  try {
    const s = new CSSStyleSheet();
    s.replaceSync(STYLE);
    D.adoptedStyleSheets = [...D.adoptedStyleSheets, s];
  } catch (e) {}
  let dialog, flushing, retry;

  // ---- recording on the server: the queue (consent.js) sent in order, retried,
  // idempotent by client_event_id. A plain-text body keeps the request simple (no CORS
  // preflight), so even a refusal reaches the server, which counts it, and its reason
  // reaches the page.
  async function post() {
    let fresh;
    while (queue.length) {
      const b = queue[0], cfg = X.cfg();
      const r = await fetch(api + 'decisions', {method: 'POST', body: JSON.stringify(b),
        credentials: cfg.cookie.serverSet ? 'include' : 'omit'});
      if (r.status >= 500 || r.status == 429) throw Error(r.status);
      const j = await r.json().catch(noop) || {};
      let state = X.state();
      if (!r.ok) {
        // Refused: never reported as saved, kept for a later page view unless it can never
        // succeed (bad input). A visitor id whose key is refused is left for a new one, once.
        if (/key$/.test(j.type) && state && !fresh) {
          fresh = Object.assign(state, {s: X.uid(), k: X.uid(), r: ''});
          save();
          for (const x of queue) Object.assign(x, {subject: state.s, key: state.k});
          continue;
        }
        if (r.status == 422 || r.status == 400 || r.status == 413) queue.shift();
        X.keep();
        const m = 'consent: choice not recorded: ' + (j.detail || r.status);
        console.error(m);
        throw {message: m, refused: 1};
      }
      queue.splice(0, queue.length, ...queue.filter(x => x.client_event_id != b.client_event_id));
      X.keep();
      if (cfg.cookie.serverSet) X.put(state = X.load() || state);  // the server set the cookie
      if (state && b.subject == state.s) {
        state.i = j.event_id;
        state.r = j.read_token;
        // What the server recorded stands, not what this page assumed: a minor's screening
        // (a browser linked to a minor's account, say: the age rule holds here from now
        // on), GPC the page cannot see (a Sec-GPC header without the script property), or,
        // with an event of the page's own such as GPC's, a change made elsewhere since
        // (the answer carries the whole state). Consent Mode, tags and cookies follow; a
        // tag that already ran is stopped by a reload.
        const before = X.cats(), c = j.consent && decided(j.consent);
        if (j.minor) state.m = true;
        if (j.consent && j.consent.gpc) state.g = true;
        const held = c && !queue.length && Object.keys(c).some(k => c[k] != state.c[k]);
        if (held) state.c = c;
        save();
        if (held && X.changed(before)) X.reload();
      }
      W.dispatchEvent(new CustomEvent('consent:recorded', {detail: {eventId: j.event_id, duplicate: j.duplicate}}));
    }
    return X.get();
  }
  function flush() {
    if (!flushing) {
      const done = () => { flushing = null; };
      flushing = post().then(v => { done(); return v; }, e => {
        done(); clearTimeout(retry);
        if (e.refused) throw Error(e.message);
        retry = setTimeout(() => { if (queue.length) flush().catch(noop); }, 3e4);
        throw Error('consent: not recorded yet (' + e.message + '); it will be sent later');
      });
    }
    return flushing;
  }

  // The categories some event decided, as the server's view V gives them: its map says
  // false for the others too, though nobody decided them, and an opt-out region has those
  // on (consent.decisions.state_view). Left out here, they keep the region's default (off
  // where consent is opt-in: the banner asks for them).
  const decided = v => { const c = {}; for (const k of v.decided || Object.keys(v.categories)) c[k] = v.categories[k]; return c; };

  // ---- the check with the server (consent.js calls it only with a read token and an
  // empty queue: a choice still to send is newer). True when scripts that already ran
  // must be stopped by a reload.
  const snap = () => JSON.stringify([X.cats(), X.valid()]);
  async function sync() {
    const state = X.state(), cfg = X.cfg(), was = snap(), before = X.cats(), o = cfg.cookie, at = x => Date.parse(x) / 1e3 | 0;
    const v = await Promise.race([new Promise(r => setTimeout(r, 3e3)),
      fetch(api + 'me/' + state.s + '?r=' + state.r, {credentials: 'omit', cache: 'no-cache'})
      .then(r => r.ok ? r.json() : r.status == 404 && 0)]).catch(noop);
    if (v) {
      // (the server's last event is the one this browser recorded: nothing newer was chosen
      // there, and the browser's own categories stand; anything newer, from the preference
      // center, the site's backend or an admin, is adopted for what it decided only)
      Object.assign(state, {c: v.eventId && v.eventId == state.i ? state.c : decided(v), p: v.policyVersion, t: at(v.decidedAt), e: at(v.expiresAt) || state.e, src: v.source, g: v.gpc, i: v.eventId, m: !!v.minor});
      save();
      // a new policy version or category: the new config, kept over the cached script's
      if (v.revision != cfg.revision) await X.renew().catch(noop);
    } else if (v === 0) {  // erased, expired or unknown: as if this browser never chose
      X.put(null);
      D.cookie = o.name + '=; Max-Age=0; Path=/' + (o.domain ? '; Domain=' + o.domain : '');
    }
    return was != snap() && X.changed(before);
  }

  // ---- the preferences dialog and the way to the preference center
  const prefsUrl = p => base + 'preferences' + p + '?site=' + encodeURIComponent(site);
  // The preference center: the link posts the visitor id with its device key (no secret in a
  // URL); the page the visitor comes back to asks the server before any tag (consent.js).
  function enter(e) {
    const state = X.state();
    if (!state || e.ctrlKey || e.metaKey) return;  // no visitor yet, or a new tab: the plain link
    e.preventDefault();
    X.mark('p');
    const f = h('form', {method: 'post', action: prefsUrl('/enter')},
      [['subject', state.s], ['key', state.k], ['return', location.href], ['lang', X.cfg().locale]]
        .map(([name, value]) => h('input', {type: 'hidden', name, value})));
    D.body.append(f);
    f.submit();
  }

  // A cookie is only removed with its exact domain and path: try each candidate.
  function drop(spec) {
    const re = spec.pattern && new RegExp(spec.pattern), h = location.hostname.split('.');
    const doms = spec.domain ? ['', spec.domain] : [''].concat(h.map((x, i) => h.slice(i).join('.')));
    for (const p of D.cookie.split('; ')) {
      const n = p.split('=')[0];
      if (n && (re ? re.test(n) : n == spec.name)) for (const d of doms) D.cookie = n + '=; Max-Age=0; Path=' + (spec.path || '/') + (d && '; Domain=' + d);
    }
  }

  return {flush, sync,
    // A withdrawn category's cookies and storage keys ({localStorage|sessionStorage: a RegExp
    // source the server builds so that it never matches the widget's own consent: keys}).
    drop: (off, C) => { for (const c of C ? C.categories : []) if (off.includes(c.key)) for (const s of c.services || []) try {
      (s.cookies || []).forEach(drop);
      for (const k in s.storage) for (const n of Object.keys(W[k])) RegExp(s.storage[k]).test(n) && W[k].removeItem(n);
    } catch (e) {} },  // (storage may be unavailable: privacy modes, sandboxed frames)
    // Details of another revision than the banner's config (the site was edited since one
    // of them was fetched): the banner's config is renewed, and the details fetched again
    // if they are still not of its revision, so that the choice names the revision whose
    // words the dialog shows (consent.notices). Failing that (servers whose caches still
    // differ, offline), the dialog shows the details it has: never one without its texts.
    show: (opener, C) => C && C.revision != X.cfg().revision
      ? X.renew().then(() => C.revision == X.cfg().revision ? C
        : fetch(api + 'config?locale=' + encodeURIComponent(X.cfg().locale) + '&details=1', {credentials: 'omit', cache: 'no-cache'})
          .then(r => r.json()).then(c => c.revision == X.cfg().revision ? c : C))
        .then(c => open(opener, c), () => open(opener, C))
      : open(opener, C)};

  function open(opener, C) {
    if (dialog && dialog.open) return;  // a closed one may still await its close event
    const cfg = C || X.cfg(), state = X.state(), S = k => cfg.strings[k] || X.S(k);
    const btn = (k, f, alt) => h('button', {type: 'button', class: 'cw-b' + (alt ? ' cw-alt' : ''), 'data-cw': k, on: f}, S(k));
    const from = opener || D.activeElement, sw = {}, gk = X.gpcKeys(), gpc = navigator.globalPrivacyControl === true;
    const done = (action, vals) => { X.choose(action, 'preferences', vals).catch(() => {}); dialog.close(); };
    dialog = h('dialog', {class: 'cw cw-prefs', 'aria-labelledby': 'cw-pt'},
      h('h2', {class: 'cw-t', id: 'cw-pt'}, S('prefsTitle')),
      h('p', null, cfg.strings.prefsText || '', ' ', policy()),
      note(),
      ageQ(),
      h('ul', {class: 'cw-cats'}, cfg.categories.map(c => {
        const id = 'cw-c-' + c.key, svc = c.services || [];
        sw[c.key] = h('input', {type: 'checkbox', role: 'switch', class: 'cw-sw', id, 'aria-describedby': id + '-d',
          checked: c.locked || has(c.key), disabled: c.locked || gpc && gk.includes(c.key)});
        return h('li', {class: 'cw-cat'},
          h('div', {class: 'cw-row'}, h('label', {class: 'cw-ct', for: id}, c.title),
            c.locked && h('span', {class: 'cw-on'}, S('alwaysOn')), sw[c.key]),
          h('p', {class: 'cw-cd', id: id + '-d'}, c.description),
          svc.length > 0 && cfg.strings.services && h('details', null, h('summary', null, S('services')), h('ul', null, svc.map(s =>
            h('li', null, h('strong', null, s.name), s.provider ? ' (' + s.provider + ')' : '', s.purpose ? ': ' + s.purpose : '',
              (s.cookies || []).length > 0 && h('span', {class: 'cw-ck'}, S('cookies') + ': ' +
                s.cookies.map(k => k.name || k.pattern).join(', ')))))));
      })),
      h('div', {class: 'cw-acts'},
        btn('rejectAll', () => done('reject_all')),
        btn('acceptAll', () => done('accept_all')),
        btn('save', () => { const v = {}; for (const k in sw) v[k] = sw[k].checked; done('custom', v); }, 1)),
      // (the preference center is online only: its link and the intro come with the details)
      cfg.strings.more && h('p', {class: 'cw-more'}, h('a', {href: prefsUrl('') + '&return=' + encodeURIComponent(location.href), go: enter}, S('more'))),
      // Proof of the recorded choice: its receipt, which the server sends as a file (so a
      // plain link, even cross-origin). Its string comes with the details: not offline.
      state && state.i && cfg.strings.proof && h('p', {class: 'cw-more'}, h('a', {href: api + 'receipts/' + state.i + '?r=' + state.r}, S('proof'))),
      h('button', {type: 'button', class: 'cw-x', 'aria-label': S('close')}, '×'));
    dialog.lastChild.addEventListener('click', () => dialog.close());
    const me = dialog;
    me.addEventListener('close', () => { me.remove(); if (dialog == me) { dialog = null; refocus(from.isConnected ? from : X.back()); } });
    D.body.append(dialog);
    dialog.showModal();  // native modal: focus moves in, Escape closes, the page is inert
  }
});
