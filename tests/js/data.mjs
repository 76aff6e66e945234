// The shared data files the JavaScript tests read: the step-text cases (also read by the Python
// tests) and the schedule table the front end loads (written from the Python schedules).
import { readFileSync } from "node:fs";

const read = (path) => JSON.parse(readFileSync(new URL(path, import.meta.url), "utf8"));
export const CASES = read("../data/step_text_cases.json");
export const TABLE = read("../../web/data/schedules.json");
