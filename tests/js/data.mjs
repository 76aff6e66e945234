// The shared data files the JavaScript tests read: the step-text and custom-size cases (also read by
// the Python tests) and the schedule table the front end loads (written from the Python schedules).
import { readFileSync } from "node:fs";

const read = (path) => JSON.parse(readFileSync(new URL(path, import.meta.url), "utf8"));
export const CASES = read("../data/step_text_cases.json");
export const SIZE_CASES = read("../data/custom_size_cases.json").cases;
export const TABLE = read("../../web/data/schedules.json");
