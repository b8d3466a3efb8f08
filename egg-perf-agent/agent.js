'use strict';
// The Egg agent process: starts @corp/perf-agent with labels role=agent, egg_app.
module.exports = require('./lib/boot').bootHook('agent');
