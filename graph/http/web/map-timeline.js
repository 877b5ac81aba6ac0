// The timeline over the archive's span (dataSpan): drag to any instant (the page then asks
// with asOf and live updates pause), "Now" or "Latest data", and play/pause: `trendmap.timeline`.
"use strict";
(() => {
  const TM = window.trendmap;
  const { $ } = TM;
  const range = $("timeline-range"), shown = $("instant"), nowButton = $("now");
  const playButton = $("play");
  const FRAME_MS = 1100; // at least this long between two frames of play
  let playing = false;

  const seconds = (date) => Math.floor(new Date(date).getTime() / 1000);
  const windowSeconds = () => TM.WINDOW_HOURS[TM.view.timeWindow] * 3600;

  // The archive ends in the past when the current window (ending now) holds none of it.
  function archiveInPast() {
    return TM.span.last !== null && seconds(TM.span.last) < Date.now() / 1000 - windowSeconds();
  }

  function render() {
    const latest = archiveInPast();
    nowButton.textContent = latest ? "Latest data" : "Now";
    nowButton.title = latest
      ? `the archive ends at ${TM.instant(TM.span.last)}: show its last instant`
      : "back to now, with live updates";
    if (TM.view.asOf) {
      range.value = String(seconds(TM.view.asOf));
      shown.textContent = TM.instant(TM.view.asOf);
    } else {
      range.value = range.max;
      shown.textContent = "live · now";
    }
    document.body.classList.toggle("past", Boolean(TM.view.asOf));
  }

  async function refreshSpan() {
    let span;
    try {
      span = (await TM.gql("{ dataSpan { first last } }", {})).dataSpan;
    } catch (err) {
      return; // the map query says what is wrong
    }
    TM.span.first = span.first ? new Date(span.first) : null;
    TM.span.last = span.last ? new Date(span.last) : null;
    range.disabled = !span.first;
    if (span.first) {
      range.min = String(Math.floor(seconds(span.first) / 60) * 60);
      range.max = String(Math.ceil(seconds(span.last) / 60) * 60);
      $("span-first").textContent = TM.shortInstant(span.first);
      $("span-last").textContent = TM.shortInstant(span.last);
    }
    render();
  }

  // Show one instant: asOf, no live updates. `keep`: redraw over the drawing (play).
  function goTo(date, keep) {
    TM.view.asOf = new Date(date).toISOString().replace(".000Z", "Z");
    render();
    TM.live.pause();
    return TM.changed(keep);
  }

  // "Now" when the archive reaches into the current window, else its last instant.
  function latest() {
    stop();
    if (archiveInPast()) return goTo(TM.span.last);
    TM.view.asOf = null;
    render();
    TM.live.resume();
    return TM.changed();
  }

  function stop() {
    playing = false;
    playButton.textContent = "▶";
    playButton.setAttribute("aria-label", "play");
  }

  async function play() {
    playing = true;
    playButton.textContent = "❚❚";
    playButton.setAttribute("aria-label", "pause");
    const end = Number(range.max);
    // A quarter of the window per frame, and at most about 200 frames over the archive.
    const step = Math.max(windowSeconds() / 4, (end - Number(range.min)) / 200, 60);
    let at = TM.view.asOf ? seconds(TM.view.asOf) : Number(range.min);
    if (at >= end) at = Number(range.min); // from the start again
    while (playing) {
      const started = Date.now();
      await goTo(at * 1000, true);
      if (at >= end) break;
      await new Promise((done) => setTimeout(done, Math.max(0, FRAME_MS - (Date.now() - started))));
      at = Math.min(at + step, end);
    }
    stop();
  }

  range.addEventListener("input", () => {
    shown.textContent = TM.instant(Number(range.value) * 1000);
  });
  range.addEventListener("change", () => { stop(); goTo(Number(range.value) * 1000); });
  nowButton.addEventListener("click", latest);
  playButton.addEventListener("click", () => (playing ? stop() : play()));

  TM.timeline = { refreshSpan, archiveInPast, goTo, latest, render };
})();
