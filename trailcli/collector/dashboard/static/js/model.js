// What the page knows live: the persons online now and the latest events. It starts from a
// snapshot and applies the collector's frames. Every message carries a number and every frame
// says which numbers it covers (from, n]: a message a snapshot already includes is skipped, and a
// snapshot older than the page's state is brought forward with the frames kept since.

import { personKey } from "./format.js";

const MAX_EVENTS = 5000;
const KEPT_FRAMES = 120; // about 30 s of frames, to bring a fetched snapshot forward
const VISIT_FIELDS = ["views", "source", "device_type", "browser", "os", "country", "referring_domain"];

export class LiveModel {
  constructor() {
    this.persons = new Map(); // person key -> row
    this.byVisit = new Map(); // visit token -> person key
    this.byVisitor = new Map(); // visitor token -> person key
    this.events = []; // oldest first, at most MAX_EVENTS
    this.visits = new Map(); // visit token -> what frames said about it (views, source, ...)
    this.n = 0; // number of the last message applied
    this.epoch = null; // which run of the collector the numbers belong to
    this.loaded = false;
    this.version = 0; // grows with every change of the persons
    this.members = 0; // grows when someone joins or leaves (the list's order may change)
    this.listeners = new Set();
    this.eventTimes = []; // arrival times (ms) of recent events, for the rate
    this.frames = []; // the latest frames, oldest first
  }

  onChange(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(what) {
    for (const fn of this.listeners) fn(what);
  }

  // Start again from a snapshot; returns false (and changes nothing) when it is too old to be
  // brought forward to what the page already shows. A snapshot of another run of the collector
  // (its numbers start again) replaces everything.
  loadSnapshot(snapshot) {
    const sameRun = this.loaded && snapshot.epoch === this.epoch;
    const since = sameRun ? this.frames.filter((frame) => frame.n > snapshot.n) : [];
    if (since.length && since[0].from > snapshot.n) return false;
    if (sameRun) {
      const last = this.events.length ? this.events[this.events.length - 1].n : 0;
      this.addEvents(snapshot.events.filter((event) => event.n > last));
    } else {
      this.frames = [];
      this.events = snapshot.events.slice(-MAX_EVENTS);
      this.epoch = snapshot.epoch;
    }
    this.persons.clear();
    this.byVisit.clear();
    this.byVisitor.clear();
    const columns = snapshot.columns;
    for (const values of snapshot.persons) {
      const row = {};
      for (let i = 0; i < columns.length; i++) row[columns[i]] = values[i];
      const key = row.person || personKey(row);
      if (!key) continue;
      row.person = key;
      this.remember(this.fillFromVisit(row));
    }
    this.n = snapshot.n;
    this.loaded = true;
    for (const frame of since) this.applyFrame(frame, false);
    this.version++;
    this.members++;
    this.emit({ persons: true, events: this.events, reset: true });
    return true;
  }

  // Apply a frame; returns false when it does not follow on from what the page has (a gap).
  // A kept frame (`keep`) is new: its events join the activity; a replayed one adds none.
  applyFrame(frame, keep = true) {
    if (keep) {
      this.frames.push(frame);
      if (this.frames.length > KEPT_FRAMES) this.frames.shift();
    }
    if (frame.from > this.n) return false;
    const fresh = frame.n > this.n;
    const changes = frame.presence.filter((c) => c.n > this.n);
    const events = keep ? frame.events.filter((e) => e.n > this.n) : [];
    for (const change of changes) this.applyChange(change);
    if (events.length) this.addEvents(events);
    let touched = changes.length > 0;
    if (fresh) {
      for (const [token, update] of Object.entries(frame.visits)) {
        touched = this.applyVisit(token, update) || touched;
      }
      for (const [key, clients] of Object.entries(frame.clients || {})) {
        const row = this.persons.get(key);
        if (row && row.clients !== clients) {
          row.clients = clients;
          touched = true;
        }
      }
      this.n = frame.n;
    }
    if (touched) this.version++;
    if (keep) this.emit({ persons: touched, events, changes, skipped: frame.skipped || 0 });
    return true;
  }

  applyChange(change) {
    const key = change.person || personKey(change);
    if (!key) return;
    if (change.type === "leave") {
      const row = this.persons.get(key);
      if (row) {
        this.forget(row);
        this.members++;
      }
      return;
    }
    const before = this.persons.get(key);
    if (!before) this.members++;
    const row = before || { person: key, online_since: change.time, views: null, channels: [] };
    row.user_id = change.user_id;
    row.visitor_token = change.visitor_token;
    if (change.visit_token) row.visit_token = change.visit_token;
    if (change.page) row.last_page = change.page;
    if (change.clients !== null && change.clients !== undefined) row.clients = change.clients;
    if (change.node_id) row.node_id = change.node_id;
    if (before && change.time < row.online_since) this.members++; // its place in the order moves
    if (!before || change.time < row.online_since) row.online_since = change.time;
    this.remember(this.fillFromVisit(row));
  }

  // Fill what a row lacks (a join names no device) from what frames said about its visit.
  fillFromVisit(row) {
    const known = row.visit_token && this.visits.get(row.visit_token);
    if (known) {
      for (const field of VISIT_FIELDS) {
        if (row[field] === undefined || row[field] === null) row[field] = known[field] ?? null;
      }
    }
    return row;
  }

  // A frame's news about one visit: its page count, latest page, source and device.
  applyVisit(token, update) {
    const known = this.visits.get(token) || {};
    Object.assign(known, update);
    this.visits.set(token, known);
    if (this.visits.size > 50000) this.visits.delete(this.visits.keys().next().value);
    const key = this.byVisit.get(token) || this.findPerson(update);
    const row = key && this.persons.get(key);
    if (!row) return false;
    if (update.page && (!row.page_time || !update.time || update.time >= row.page_time)) {
      row.last_page = update.page;
      if (update.time) row.page_time = update.time;
    }
    if (row.visit_token === token) {
      for (const field of VISIT_FIELDS) {
        if (update[field] !== undefined && update[field] !== null) row[field] = update[field];
      }
    }
    return true;
  }

  // The row an update's person names: by key, or a visitor token whose person has a user id.
  findPerson(update) {
    if (!update.person) return null;
    return this.persons.has(update.person) ? update.person : this.byVisitor.get(update.person) || null;
  }

  remember(row) {
    this.persons.set(row.person, row);
    if (row.visit_token) this.byVisit.set(row.visit_token, row.person);
    if (row.visitor_token) this.byVisitor.set(row.visitor_token, row.person);
  }

  forget(row) {
    this.persons.delete(row.person);
    if (row.visit_token && this.byVisit.get(row.visit_token) === row.person) this.byVisit.delete(row.visit_token);
    if (row.visitor_token && this.byVisitor.get(row.visitor_token) === row.person) {
      this.byVisitor.delete(row.visitor_token);
    }
  }

  // The person row an event belongs to: by its person key, its visitor, or its visit.
  personOf(event) {
    const key = event.person || personKey(event);
    if (key && this.persons.has(key)) return this.persons.get(key);
    const viaVisitor = event.visitor_token && this.byVisitor.get(event.visitor_token);
    if (viaVisitor) return this.persons.get(viaVisitor);
    const viaVisit = event.visit_token && this.byVisit.get(event.visit_token);
    return viaVisit ? this.persons.get(viaVisit) : null;
  }

  addEvents(events) {
    const now = performance.now();
    for (const event of events) {
      this.events.push(event);
      this.eventTimes.push(now);
    }
    if (this.events.length > MAX_EVENTS * 1.2) this.events = this.events.slice(-MAX_EVENTS);
    const cutoff = now - 5000;
    let drop = 0;
    while (drop < this.eventTimes.length && this.eventTimes[drop] < cutoff) drop++;
    if (drop) this.eventTimes.splice(0, drop);
  }

  // Events per second over the last five seconds.
  eventRate() {
    const cutoff = performance.now() - 5000;
    let count = 0;
    for (let i = this.eventTimes.length - 1; i >= 0 && this.eventTimes[i] >= cutoff; i--) count++;
    return count / 5;
  }
}
