'use strict';
// Every Egg worker: starts @corp/perf-agent with labels role=worker, worker_id, egg_app.
module.exports = require('./lib/boot').bootHook('worker');
