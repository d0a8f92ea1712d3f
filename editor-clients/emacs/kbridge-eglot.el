;;; kbridge-eglot.el --- kbridge lsp for eglot  -*- lexical-binding: t; -*-

;;; Commentary:

;; Starts `kbridge lsp' (diagnostics, completion, hover and code actions for the bridge
;; configuration, with live data from the current kubeconfig's cluster; see docs/lsp.md
;; in the kbridge repository) through eglot for:
;;
;; - KubernetesLocalProcessConfig.yaml: `kbridge-config-mode' (derived from `yaml-ts-mode'
;;   or `yaml-mode' when available, else `text-mode');
;; - azds-local.env: `kbridge-azds-env-mode' (derived from `conf-unix-mode');
;; - .vscode/launch.json: `kbridge-launch-json-mode' (derived from `js-json-mode' on
;;   Emacs >= 29, else `js-mode').
;;
;; eglot attaches one server per major mode, so these files get modes of their own
;; (other YAML and JSON files keep theirs and their servers).  Needs eglot (built in
;; from Emacs 29.1, GNU ELPA before) and kbridge on PATH.
;;
;; Usage: (require 'kbridge-eglot), then M-x eglot in one of those files, or
;; (add-hook 'kbridge-config-mode-hook #'eglot-ensure) and likewise for the others.

;;; Code:

(require 'eglot)

(defconst kbridge-eglot-command '("kbridge" "lsp")
  "The command eglot runs for kbridge's files.")

(defalias 'kbridge-eglot--yaml-parent
  (cond ((fboundp 'yaml-ts-mode) 'yaml-ts-mode)
        ((fboundp 'yaml-mode) 'yaml-mode)
        (t 'text-mode))
  "The YAML mode this Emacs has.")

(defalias 'kbridge-eglot--json-parent
  (if (fboundp 'js-json-mode) 'js-json-mode 'js-mode)
  "The JSON mode this Emacs has.")

;;;###autoload
(define-derived-mode kbridge-config-mode kbridge-eglot--yaml-parent "kbridge-config"
  "Major mode for KubernetesLocalProcessConfig.yaml, served by `kbridge lsp'.")

;;;###autoload
(define-derived-mode kbridge-azds-env-mode conf-unix-mode "azds-env"
  "Major mode for azds-local.env, served by `kbridge lsp'.")

;;;###autoload
(define-derived-mode kbridge-launch-json-mode kbridge-eglot--json-parent "launch.json"
  "Major mode for .vscode/launch.json, served by `kbridge lsp'.")

;;;###autoload
(progn
  (add-to-list 'auto-mode-alist '("KubernetesLocalProcessConfig\\.yaml\\'" . kbridge-config-mode))
  (add-to-list 'auto-mode-alist '("/azds-local\\.env\\'" . kbridge-azds-env-mode))
  (add-to-list 'auto-mode-alist '("/\\.vscode/launch\\.json\\'" . kbridge-launch-json-mode)))

(add-to-list 'eglot-server-programs
             `((kbridge-config-mode kbridge-azds-env-mode kbridge-launch-json-mode)
               . ,kbridge-eglot-command))

(provide 'kbridge-eglot)
;;; kbridge-eglot.el ends here
