// entroprune's Node API. The pipeline: load → capture → measure → plan → apply → save → evaluate.
export { loadModel, Model, type ModelInfo, type LoadModelOptions } from './load/model';
export { tokenizerFor, loadTokenizerFile, type Tokenizer } from './load/tokenizer';
export { perplexity, perplexityOfTokens, defaultSeqLen, type PerplexityOptions, type PerplexityResult } from './evaluate/perplexity';
export { evaluateTask, evaluateTasks, averageAccuracy, selectDocs, type TaskOptions, type TaskResult } from './evaluate/tasks/zero-shot';
export { TASKS, PAPER_TASKS, taskSpec, loadTaskDocs, type TaskDoc, type ChoiceDoc, type TaskSpec } from './evaluate/tasks/task-files';
export { type LoglikelihoodResult } from './evaluate/tasks/loglikelihood';
export { analyze, analyzeToFile, modelIdentity, type AnalyzeOptions, type AnalyzeResult } from './measure/analyze';
export { readAnalysis, writeAnalysis, analysisSchema, type Analysis, type BlockStats, type LoadedAnalysis } from './measure/analysis';
export { plan, type PlanOptions, type PlannerInput, type WeightMagnitudes } from './plan/planner';
export { readPlan, writePlan, validatePlan, checkPlan, achievedRatio, prunedShapes, compensationBiases, planSchema, type PruningPlan, type BlockPlan, type PlanMethod } from './plan/plan';
export { applyPlan, defaultFormat, type ApplyOptions, type ApplyResult, type OutputFormat } from './apply/apply';
export { prune, sidecarFiles, type PruneOptions, type PruneResult } from './prune/prune';
export { setThreads, cudaInfo, resolveDevice, type DeviceRequest, type DeviceStage, type ResolvedDevice } from './runtime';
export { EntropruneError, type EntropruneErrorCode } from './util/errors';
export { type SyntheticModelSpec, type CudaProbe } from './native';
export { VERSION } from './version';
export { writeSyntheticModel, SYNTHETIC_PRESETS, type SyntheticPreset, type SyntheticOptions } from './synthetic';
